"""The peers of one test (what the ``asgi_peers`` fixture hands out), ended all together."""

from __future__ import annotations

import asyncio
from typing import Any

from .client import Peer


class PeerGroup:
    """Starts peers for one test, all building the same layer, and ends them all afterwards."""

    def __init__(self, dotted_path: str, config: dict[str, Any], *, call_timeout: float = 10.0,
                 start_timeout: float = 30.0):
        self.dotted_path = dotted_path
        self.config = dict(config)
        self.call_timeout = call_timeout
        self.start_timeout = start_timeout
        self.peers: list[Peer] = []

    def _spawn(self, overrides: dict[str, Any]) -> Peer:
        peer = Peer(self.dotted_path, {**self.config, **overrides}, name=f"peer-{len(self.peers) + 1}",
                    call_timeout=self.call_timeout, start_timeout=self.start_timeout)
        self.peers.append(peer)
        return peer

    def start(self, **overrides: Any) -> Peer:
        """One ready peer whose layer is ``dotted_path(**config, **overrides)``."""
        return self._spawn(overrides).wait_ready()

    def start_many(self, count: int, **overrides: Any) -> list[Peer]:
        """``count`` ready peers, started side by side (start-up costs overlap)."""
        peers = [self._spawn(overrides) for _ in range(count)]
        return [peer.wait_ready() for peer in peers]

    async def astart(self, **overrides: Any) -> Peer:
        return await self._spawn(overrides).await_ready()

    async def astart_many(self, count: int, **overrides: Any) -> list[Peer]:
        peers = [self._spawn(overrides) for _ in range(count)]
        return list(await asyncio.gather(*(peer.await_ready() for peer in peers)))

    def close(self) -> None:
        """End every peer: closing stdin lets each release its layer; stragglers are killed."""
        for peer in self.peers:  # all told first, so their grace periods overlap
            peer.end_input()
        for peer in self.peers:
            peer.close()
