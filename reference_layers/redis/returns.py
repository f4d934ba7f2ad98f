"""What a loop holds goes back to Redis when it ends.

A loop ends with every ``asyncio.run`` and every ``async_to_sync`` call, while the layer object
lives on. Its shelf (shelf.py) holds group copies and messages read ahead that only it could
receive; they go back to the head of their queues, oldest first, counted there again, so the
next loop (or any sender, judging room) sees them as if never taken. Not before this loop is sure
no flush came since (flushes.py): copies of an older flush epoch stay gone.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from ..core.statistics import ConnectionState
from .cluster import ClusterShard
from .copies import Copy
from .shard import ShardClient
from .shelf import CopyShelf

# Where the copies can go: a shard's own connection that is up (a lost one would make the closing
# loop wait out reconnect_timeout); a cluster unless it never connected (LOST there may only mean
# a master this loop never talked to).
_REACHABLE = {ShardClient: {ConnectionState.CONNECTED},
              ClusterShard: {ConnectionState.CONNECTED, ConnectionState.LOST}}


async def return_held(shelf: CopyShelf, shard_of: Callable[[str], ShardClient | ClusterShard],
                      capacity_key: Callable[[str], str], ttl_ms: int) -> None:
    """Push back everything ``shelf`` holds (``shard_of`` and ``capacity_key`` of a channel)."""
    if not shelf:
        return
    watches = {shard_of(channel).flushes_for(capacity_key(channel)) for channel in shelf.channels()}
    await asyncio.gather(*(watch.listen() for watch in watches if not watch.current), return_exceptions=True)
    returns: dict[str, list[Copy]] = {}
    for copy in shelf.take_everything():  # those of a flushed epoch were dropped by the listen
        returns.setdefault(copy.channel, []).append(copy)
    pushes = []
    for channel, copies in returns.items():
        shard, key = shard_of(channel), copies[0].capacity_key
        if shard.flushes_for(key).current and shard.connection_state() in _REACHABLE[type(shard)]:
            pushes.append(shard.push_back(key, channel, [copy.entry for copy in copies], ttl_ms))
    await asyncio.gather(*pushes, return_exceptions=True)
