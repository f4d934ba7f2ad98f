"""What a loop holds goes back to Redis when it ends.

A loop ends with every ``asyncio.run`` and every ``async_to_sync`` call, while the layer object
lives on. Its shelf (shelf.py) holds group copies and messages read ahead that only it could
receive; they go back to the head of their queues, oldest first, counted there again, so the
next loop (or any sender, judging room) sees them as if never taken. Not before this loop is sure
no flush came since (flushes.py): copies of an older flush epoch stay gone.

Where a shard cannot be reached as the loop ends (its connection lost), or no flush can be heard
from it, its copies are *carried*: handed back to the layer object, and the next loop's shelf
holds them as if its own pop had taken them. That loop hears the shard's flushes before it gives
one out, so a flush meanwhile still drops them (their epoch is the server's, not the loop's).
A push that was sent but failed is not carried: it may have run.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from ..core.statistics import ConnectionState
from .cluster import ClusterShard
from .copies import Copy, HeldEntry
from .shard import ShardClient
from .shelf import CopyShelf

# Where the copies can go: a shard's own connection that is up (a lost one would make the closing
# loop wait out reconnect_timeout); a cluster unless it never connected (LOST there may only mean
# a master this loop never talked to).
_REACHABLE = {ShardClient: {ConnectionState.CONNECTED},
              ClusterShard: {ConnectionState.CONNECTED, ConnectionState.LOST}}


async def return_held(shelf: CopyShelf, shard_of: Callable[[str], ShardClient | ClusterShard],
                      capacity_key: Callable[[str], str], ttl_ms: int) -> list[Copy]:
    """Push back everything ``shelf`` holds (``shard_of`` and ``capacity_key`` of a channel);
    returns the copies to carry to the next loop, oldest first per channel."""
    if not shelf:
        return []
    watches = {shard_of(channel).flushes_for(capacity_key(channel)) for channel in shelf.channels()}
    await asyncio.gather(*(watch.listen() for watch in watches if not watch.current), return_exceptions=True)
    returns: dict[str, list[Copy]] = {}
    for copy in shelf.take_everything():  # those of a flushed epoch were dropped by the listen
        returns.setdefault(copy.channel, []).append(copy)
    pushes, carried = [], []
    for channel, copies in returns.items():
        shard, key = shard_of(channel), copies[0].capacity_key
        if shard.flushes_for(key).current and shard.connection_state() in _REACHABLE[type(shard)]:
            pushes.append(shard.push_back(key, channel, [copy.entry for copy in copies], ttl_ms))
        else:
            carried.extend(copies)
    await asyncio.gather(*pushes, return_exceptions=True)
    return carried


def hold_carried(shelf: CopyShelf, carried: list[Copy],
                 current_at: Callable[[str], Callable[[float], bool]]) -> None:
    """Put copies an ended loop carried on a new loop's ``shelf``, per capacity key;
    ``current_at(key)``: whether the new loop hears that key's flushes at a given time."""
    by_key: dict[str, list[Copy | HeldEntry]] = {}  # as shelf.put takes them
    for copy in carried:
        by_key.setdefault(copy.capacity_key, []).append(copy)
    for key, copies in by_key.items():
        shelf.put(copies, current_at(key))
