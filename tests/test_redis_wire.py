"""Our Redis layer's command connection (wire.py): when its commands leave, on a real server.

A syscall costs this machine about 10-25 µs, as much as Redis takes to run a script, so how
many writes a call makes shows in every round trip: a lone command leaves at once, commands of
one loop iteration leave together, and a script with the pops queued behind it
(``more_follow``, then ``write_now``) leaves in one write with them, at once.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import ConnectionPool

from reference_layers.redis.wire import Wire, open_wire, pack
from tests.helpers import run


class _CountedWrites:
    """The wire's transport, with each write it is asked for counted (the bytes still go out)."""

    def __init__(self, wire: Wire):
        self.writes: list[bytes] = []
        transport = wire._transport
        write = transport.write

        def counted(data: bytes) -> None:
            self.writes.append(bytes(data))
            write(data)

        transport.write = counted  # type: ignore[method-assign]


async def _wire(url: str) -> tuple[Wire, _CountedWrites, ConnectionPool]:
    pool = ConnectionPool.from_url(url)
    wire = await open_wire(pool, timeout=5)
    return wire, _CountedWrites(wire), pool


def test_a_script_and_the_commands_behind_it_leave_in_one_write_at_once(redis_urls):
    async def main():
        wire, counted, pool = await _wire(redis_urls[0])
        try:
            first = wire.call(pack(b"ECHO", b"script"), more_follow=True)
            behind = [wire.call(pack(b"ECHO", b"pop %d" % n)) for n in range(2)]
            assert counted.writes == []  # held for the ones behind
            wire.write_now()
            assert len(counted.writes) == 1 and counted.writes[0].count(b"ECHO") == 3
            assert [await first, *[await each for each in behind]] == [b"script", b"pop 0", b"pop 1"]
            await asyncio.sleep(0)  # the turn where the batch was also scheduled: nothing is left
            assert len(counted.writes) == 1
        finally:
            wire.close()
            await pool.disconnect()

    run(main())


def test_a_lone_command_leaves_at_once_and_the_next_ones_of_its_turn_together(redis_urls):
    async def main():
        wire, counted, pool = await _wire(redis_urls[0])
        try:
            lone = wire.call(pack(b"ECHO", b"lone"))
            assert len(counted.writes) == 1  # a sequential caller waits for no batch
            later = [wire.call(pack(b"ECHO", b"%d" % n)) for n in range(3)]
            assert len(counted.writes) == 1
            assert await lone == b"lone"
            assert [await each for each in later] == [b"0", b"1", b"2"]
            assert len(counted.writes) == 2  # the three of one turn in one write
        finally:
            wire.close()
            await pool.disconnect()

    run(main())
