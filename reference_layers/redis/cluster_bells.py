"""The bells of a Redis Cluster: each subscribed (sharded pub/sub) on the node serving its slot now."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .bells import Listener
from .cluster_node import ClusterNode
from .cluster_slots import key_slot

OnSlot = Callable[[int, Callable[[ClusterNode, bool], Awaitable[Any]]], Awaitable[Any]]


class ClusterBells:
    """``on_slot``: runs an attempt on the node serving a slot, following the cluster's moves
    (cluster.py); ``nodes()``: the nodes known now, where a listener may be subscribed."""

    def __init__(self, on_slot: OnSlot, nodes: Callable[[], Iterable[ClusterNode]]):
        self._on_slot = on_slot
        self._nodes = nodes
        self._listeners: dict[bytes, Listener] = {}

    def listen(self, bell: bytes, listener: Listener) -> None:
        self._listeners[bell] = listener

    def forget(self, bell: bytes, listener: Listener) -> None:
        if self._listeners.get(bell) == listener:
            del self._listeners[bell]
        for node in self._nodes():
            node.bells.forget(bell, listener)

    async def unsubscribe(self, bell: bytes) -> None:
        """Drop ``bell``'s subscription on whichever node has it, once no listener is left on it."""
        await asyncio.gather(*(node.bells.unsubscribe(bell) for node in self._nodes()))

    async def subscribe(self, bell: bytes) -> None:
        """Return once a push on ``bell`` is sure to ring, on the node that serves it now."""
        listener = self._listeners.get(bell)

        async def attempt(node: ClusterNode, asking: bool) -> None:
            if listener is not None:
                node.bells.listen(bell, listener)
            await node.bells.subscribe(bell)

        await self._on_slot(key_slot(bell), attempt)

    def close(self) -> None:
        for node in self._nodes():
            node.bells.close()
