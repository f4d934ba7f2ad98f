"""Which groups hold this layer object's own process channels, by capacity key.

A group_send to such a group puts one inbox entry for the object's members (copies.py); the
object's first receive after it would pop that entry, a round trip of its own. Known here, the
group_send queues that pop right behind its script on the same connection instead, so the
entry comes back with the group_send's reply and the members' receives find their copies held.
Only on a loop that has received on that key: copies held belong to the loop that popped them
and go with it, and a loop made for one call (async_to_sync) would take them along.

A membership is forgotten when the object discards it or flushes; one that expired on the
server stays known until then, which costs a group_send to that group one pop that finds
nothing, never a wrong delivery (a pop is correct whoever sends it).
"""

from __future__ import annotations

from collections.abc import Collection


class OwnGroups:
    """group -> capacity key -> this object's channels of that key in the group."""

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, set[str]]] = {}

    def added(self, group: str, capacity_key: str, channel: str) -> None:
        self._groups.setdefault(group, {}).setdefault(capacity_key, set()).add(channel)

    def discarded(self, group: str, capacity_key: str, channel: str) -> None:
        keys = self._groups.get(group)
        channels = keys.get(capacity_key) if keys else None
        if channels is None:
            return
        channels.discard(channel)
        if not channels:
            del keys[capacity_key]  # type: ignore[union-attr]  # keys holds capacity_key
            if not keys:
                del self._groups[group]

    def keys_in(self, group: str) -> Collection[str]:
        """The capacity keys of this object's channels in ``group``."""
        keys = self._groups.get(group)
        return keys.keys() if keys else ()

    def forget_all(self) -> None:
        """A flush deleted every membership."""
        self._groups.clear()
