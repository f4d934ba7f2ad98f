"""What the receive side of a loop tells that loop's feed of group copies (process_groups.py).

A module of its own: process_groups.py builds on receiving.py, which names the feed only
through this protocol.
"""

from __future__ import annotations

from typing import Protocol


class FeedEvents(Protocol):
    """What the receive side tells this loop's feed of group copies (process_groups.GroupFeed)."""

    def on_cancelled(self, tag: str) -> str | None: ...  # the copies queue that consumer fed from
    def on_link_lost(self) -> None: ...
    def on_link(self) -> None: ...
    def watch_soon(self, queue: str) -> None: ...
    def consumed(self) -> list[str]: ...  # the copies queue of each consumer of this feed


class NoFeed:
    """Until a loop has a feed (layer.py attaches one to every receiver)."""

    def on_cancelled(self, tag: str) -> str | None:
        return None
    def on_link_lost(self) -> None: ...
    def on_link(self) -> None: ...
    def watch_soon(self, queue: str) -> None: ...
    def consumed(self) -> list[str]:
        return []
