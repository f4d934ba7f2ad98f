"""The FAULT area's words: the server a test may fault, and layer calls bounded by the fault timeout.

A FAULT test gets a :class:`ServerUnderTest` from the ``asgi_server`` fixture: the fault handle
of the servers the plugin started (``--asgi-server``), where the layer's config points at them,
and the fault timeout. Every layer call a test makes while (or after) a server misbehaves goes
through :func:`within_fault_timeout`, so a layer that hangs FAILs saying where it hung instead of
stalling the run; every loss or duplicate is named by message number (:class:`Delivery`).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

from .bounded import BoundExceeded, within
from .settings import current_settings
from .target import LayerTarget
from .vocabulary import offers

if TYPE_CHECKING:  # the servers package is imported only by runs that start a server
    from .servers.handles import Servers

Result = TypeVar("Result")

RECOVERY_WINDOW = 10.0  # seconds a layer has to serve calls again after a restart (FAULT-2)
FAILOVER_WINDOW = 15.0  # the same after a failover (FAULT-7)
# The values of asgi_conformance.servers.Fault, named here so the suite need not import servers.
RESTART, PAUSE, DROP_CONNECTIONS, FAILOVER = "restart", "pause", "drop_connections", "failover"
RETRY_PAUSE = 0.2  # seconds between attempts while a layer is still recovering

FAULT_TAG = "fault"  # the ``type`` tag of every numbered message the FAULT tests send
TRAFFIC_BEFORE_FAULT = 20  # messages sent before the fault strikes
TRAFFIC_AFTER_FAULT = 20  # messages sent once it is over
TRAFFIC_PACE = 0.01  # seconds between sends, so the fault lands mid-traffic, not after it
PAUSE_SECONDS = 3.0  # how long FAULT-4 keeps the server stopped
ROOM = {"capacity": 1000}  # where the layer has capacities: room for all the traffic


@dataclass(frozen=True)
class ServerUnderTest:
    """The servers the plugin started for the run, and where the layer's config points at them."""

    servers: Servers
    kind: str  # as given to --asgi-server, without the count
    config_key: str  # the layer config entry that holds the address(es)
    as_list: bool  # the entry is a list of URLs (Redis hosts), not one URL

    @property
    def fault_timeout(self) -> float:
        return current_settings().fault_timeout

    def offers(self, fault: str) -> bool:
        """Whether every server offers ``fault``: a :class:`~asgi_conformance.servers.Fault` value."""
        return fault in {offered.value for offered in self.servers.faults}

    def require(self, fault: str) -> None:
        """Skip the running test, saying why, unless the servers can be made to ``fault``."""
        if not self.offers(fault):
            offered = ", ".join(sorted(f.value for f in self.servers.faults)) or "none"
            pytest.skip(f"the {self.kind} server(s) {self.servers.urls} offer no {fault} "
                        f"(faults offered: {offered})")

    def unreachable(self) -> Unreachable:
        """Config overrides pointing the layer at loopback ports where nothing listens."""
        from .servers.network import free_port  # lazily, as the plugin imports servers

        taken = {port for port in (urlsplit(url).port for url in self.servers.urls) if port}

        def fresh_port() -> int:
            port = free_port(taken)
            taken.add(port)
            return port

        entries, ports = [], []
        for server in self.servers:
            moved = server.entry_elsewhere(fresh_port)  # a kind with its own config form (Sentinel)
            if moved is None:
                port = fresh_port()
                moved = _with_port(server.url, port), [port]
            entries.append(moved[0])
            ports.extend(moved[1])
        return Unreachable({self.config_key: entries if self.as_list else entries[0]}, tuple(ports))

    # The faults, each skipping the test if not offered. Blocking work runs in a thread, so the
    # test's event loop (and the layer's calls in it) go on meanwhile.
    async def restart(self) -> None:
        """Restart every server (state lost); returns once they accept connections again."""
        self.require(RESTART)
        await asyncio.to_thread(self.servers.restart)

    async def pause(self, seconds: float) -> None:
        """SIGSTOP every server, and SIGCONT them ``seconds`` later."""
        self.require(PAUSE)
        await asyncio.to_thread(self.servers.pause, seconds)

    async def drop_connections(self) -> int:
        """The servers close their clients' connections and keep their state."""
        self.require(DROP_CONNECTIONS)
        return await asyncio.to_thread(self.servers.drop_connections)

    async def failover(self) -> None:
        self.require(FAILOVER)
        await asyncio.to_thread(self.servers.failover)


@dataclass(frozen=True)
class Unreachable:
    """Layer config overrides for servers nobody runs, and the ports an error should name."""

    config: dict[str, Any]
    ports: tuple[int, ...]

    def named_in(self, text: str) -> bool:
        return any(re.search(rf"(?<!\d){port}(?!\d)", text) for port in self.ports)


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    if parts.port is None or parts.hostname is None:
        pytest.skip(f"cannot derive an unreachable address from {url!r}: it names no TCP port")
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{parts.hostname}:{port}" if userinfo else f"{parts.hostname}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def error_text(error: BaseException) -> str:
    """An error and the errors it was raised from, as a user reads them in a traceback (where
    ``raise ... from None`` hides the context, so does this)."""
    texts, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return " <- ".join(texts)


async def within_fault_timeout(call: Awaitable[Result], what: str, phase: str) -> Result:
    """Await a layer call; FAIL naming the call and the phase if it takes longer than the fault timeout.

    ``what`` is the call as a user reads it ("receive()"), ``phase`` when it ran ("after the restart").
    """
    timeout = current_settings().fault_timeout
    # Not wait_for: a TimeoutError the call itself raises (a layer's own, or the test's shorter
    # wait_for inside ``call``) is the call's outcome, not a hang of the fault timeout's length.
    try:
        return await within(call, timeout)
    except BoundExceeded:
        raise AssertionError(f"hung for {timeout:g} s in {what} {phase}") from None


async def recovered_within(window: float, attempt: Any, what: str, phase: str) -> int:
    """Retry ``attempt()`` (a coroutine function, each try under the fault timeout) until it
    succeeds, for at most ``window`` seconds; returns how many tries failed before.

    A try that raises is what a recovering layer may do; one that hangs FAILs at once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + window
    failures: list[str] = []
    while True:
        try:
            await within_fault_timeout(attempt(), what, phase)
            return len(failures)
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - a layer still reconnecting may raise anything
            failures.append(error_text(exc))
        if loop.time() >= deadline:
            raise AssertionError(f"{what} still failed {window:g} s {phase} ({len(failures)} tries); "
                                 f"the last error: {failures[-1]}")
        await asyncio.sleep(RETRY_PAUSE)


@dataclass
class Delivery:
    """Numbered messages one sender sent and one receiver got, read back as losses and duplicates."""

    sender: str = "sender"
    returned: list[int] = field(default_factory=list)  # numbers whose send returned
    raised: dict[int, str] = field(default_factory=dict)  # numbers whose send raised, and the error
    received: list[int] = field(default_factory=list)  # numbers as received, in order

    def doubled(self) -> list[int]:
        return sorted(n for n, count in Counter(self.received).items() if count > 1)

    def lost(self, must_arrive: list[int] | None = None) -> list[int]:
        expected = self.returned if must_arrive is None else must_arrive
        return sorted(set(expected) - set(self.received))

    def out_of_order(self) -> list[tuple[int, int]]:
        """Adjacent received pairs where a later number came before an earlier one."""
        return [(a, b) for a, b in zip(self.received, self.received[1:]) if b < a]

    def problems(self, must_arrive: list[int] | None = None, *, ordered: bool = True) -> list[str]:
        """What is wrong, one sentence per kind, each naming the numbers; empty if nothing is."""
        found = []
        if lost := self.lost(must_arrive):
            found.append(f"lost from {self.sender} although their send returned: {lost}")
        if doubled := self.doubled():
            found.append(f"delivered twice from {self.sender}: {doubled}")
        if ordered and (swapped := self.out_of_order()):
            found.append(f"out of order from {self.sender} (earlier, later received): {swapped[:10]}")
        return found


def room_for_traffic(target: LayerTarget) -> dict[str, Any]:
    """Config overrides that give a fault test's traffic room, where the layer has capacities."""
    return ROOM if offers(target, "capacity") else {}


# --- receiving through a fault ---------------------------------------------------------

async def stop_receiving(receiving: asyncio.Task[None], stopping: asyncio.Event) -> None:
    """End a loop of receives: cancel the one waiting, and tell the loop to start no other (a
    layer may turn the cancellation into an error the loop would take for a fault)."""
    stopping.set()
    receiving.cancel()
    done, _ = await asyncio.wait({receiving}, timeout=current_settings().delivery_timeout)
    if not done:
        raise AssertionError(f"a receive() went on for {current_settings().delivery_timeout:g} s after it was "
                             "cancelled")
    if not receiving.cancelled() and (error := receiving.exception()) is not None:
        raise error


async def until_all_arrived(delivery: Delivery, must_arrive: list[int], arrived: asyncio.Event, name: str) -> None:
    """Wait (at most the fault timeout) until every message of ``must_arrive`` was received."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + current_settings().fault_timeout
    while delivery.lost(must_arrive) and loop.time() < deadline:
        arrived.clear()
        await asyncio.wait([asyncio.ensure_future(arrived.wait())], timeout=deadline - loop.time())


async def no_more_than_recorded(layer: Any, channel: str, record: Callable[[Any], None]) -> None:
    """Whatever still arrives in the quiet period is delivered too (a late duplicate shows here)."""
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(channel), current_settings().quiet_period)
        except asyncio.TimeoutError:
            return
        record(message)
