"""core.loops.PerLoop: one state per event loop, found again cheaply on the loop that runs,
and never another loop's state: in sequence, in threads, and in a forked child."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from reference_layers.core.loops import PerLoop


class State:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def per_loop() -> PerLoop[State]:
    return PerLoop(State, State.close)


def test_each_loop_in_turn_gets_its_own_state_and_its_state_is_closed_with_it():
    states = per_loop()

    async def twice() -> State:
        first = states.current()
        assert states.current() is first and first.loop is asyncio.get_running_loop()
        return first

    one, two = asyncio.run(twice()), asyncio.run(twice())
    assert one is not two and one.closed and two.closed


def test_a_loop_in_another_thread_never_gets_this_threads_state():
    states = per_loop()
    seen: dict[str, State] = {}
    started, done = threading.Event(), threading.Event()

    async def hold_loop_running() -> None:
        seen["thread"] = states.current()
        started.set()
        while not done.is_set():
            await asyncio.sleep(0.001)
        assert states.current() is seen["thread"]

    worker = threading.Thread(target=asyncio.run, args=(hold_loop_running(),))
    worker.start()
    started.wait(10)

    async def here() -> None:
        mine = states.current()  # the other thread's loop is still running, and was asked last
        assert mine is not seen["thread"] and mine.loop is asyncio.get_running_loop()
        assert states.current() is mine
        done.set()

    asyncio.run(here())
    worker.join(10)


def test_a_state_popped_or_released_is_not_found_again():
    states = per_loop()

    async def pop_then_ask() -> None:
        first = states.current()
        assert states.pop_current() is first
        assert states.current() is not first

    asyncio.run(pop_then_ask())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_a_forked_child_makes_its_own_state_for_the_loop_it_runs():
    states = per_loop()

    async def fork_from_a_running_loop() -> None:
        parents = states.current()
        reading, writing = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its copy of the parent's loop still says it runs in this thread
            verdict = b"0"
            try:
                async def in_child() -> bool:
                    return states.current() is not parents

                verdict = b"1" if asyncio.new_event_loop().run_until_complete(in_child()) else b"0"
            finally:
                os.write(writing, verdict)
                os._exit(0)
        os.close(writing)
        assert os.read(reading, 1) == b"1"
        os.close(reading)
        os.waitpid(pid, 0)
        assert states.current() is parents

    asyncio.run(fork_from_a_running_loop())


def test_the_clock_of_an_asyncio_loop_is_its_own_time():
    from reference_layers.core.loops import loop_clock

    class Shifted(asyncio.SelectorEventLoop):
        def time(self) -> float:
            return super().time() + 1000.0

    plain, shifted = asyncio.new_event_loop(), Shifted()
    try:
        assert abs(loop_clock(plain)() - plain.time()) < 1.0
        assert abs(loop_clock(shifted)() - shifted.time()) < 1.0  # its own time, not the monotonic clock
    finally:
        plain.close()
        shifted.close()
