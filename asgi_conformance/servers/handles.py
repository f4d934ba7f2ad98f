"""What every server kind yields: a handle per server, and one for the set a context started.

A handle is also the *fault handle* the suite's FAULT area (and a layer author's own fault
tests) use to make bad weather: restart the server, pause it, drop its clients' connections,
fail it over. A kind offers what it can (``faults``); the rest raise ``ServerError`` saying so.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterator
from typing import Any


class Fault(enum.Enum):
    """What a fault handle can do to its server."""

    RESTART = "restart"  # stop and start on the same port and config; the server's state is lost
    PAUSE = "pause"  # SIGSTOP every process of the server by pid, later SIGCONT
    DROP_CONNECTIONS = "drop_connections"  # the server closes its clients' connections, keeping its state
    FAILOVER = "failover"  # a replicated server loses its primary and promotes another


class ServerError(Exception):
    """A server could not be found, started or restarted; the message is one line for the user."""


class Server:
    """One server's address, and the means to restart it in place (when this process owns it).

    This base is a server somebody else runs (an address from the environment): it can be
    neither restarted nor stopped from here. Kinds that start their own override both.
    """

    restartable = False
    faults: frozenset[Fault] = frozenset()

    def __init__(self, url: str):
        self.url = url

    def _cannot(self, fault: Fault) -> ServerError:
        if not self.restartable:
            return ServerError(f"{self.url} was given by the environment, not started here: "
                               f"it cannot be made to {fault.value}")
        return ServerError(f"{self!r} offers no {fault.value}")

    def restart(self, keep_state: bool = False) -> None:
        """Stop and start again on the same port and config; the server's state is lost, unless
        ``keep_state`` asks a kind that persists it (RabbitMQ) to keep it. Returns once it
        accepts connections again."""
        raise self._cannot(Fault.RESTART)

    def suspend(self) -> None:
        """SIGSTOP every process of the server (by pid): connections stay open, nothing answers."""
        raise self._cannot(Fault.PAUSE)

    def resume(self) -> None:
        """SIGCONT what :meth:`suspend` stopped."""
        raise self._cannot(Fault.PAUSE)

    def drop_connections(self) -> int:
        """The server closes every client connection (not the one it is told through) and keeps
        its state; returns how many it closed."""
        raise self._cannot(Fault.DROP_CONNECTIONS)

    def failover(self) -> None:
        """Kill the primary (by pid) and return once a replica has taken over."""
        raise self._cannot(Fault.FAILOVER)

    @property
    def origin(self) -> str:
        """Where the server runs, for the run's header: the environment, a container or a local process."""
        return "given by the environment"
    def config_entry(self) -> Any:
        """What a layer's config holds for this server: its URL, unless the kind's clients are
        told another way (a Sentinel set: its sentinels and master name)."""
        return self.url

    def entry_elsewhere(self, fresh_port: Callable[[], int]) -> tuple[Any, list[int]] | None:
        """:meth:`config_entry` pointed at ports where nothing listens (FAULT-1), and those ports;
        None for a plain URL, whose port the suite moves itself."""
        return None

    def stop(self) -> None:
        """Nothing to stop: somebody else runs this server."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class Servers:
    """What the context managers yield: ``.urls`` (and ``.url``, the first), and the fault
    handle for all of them: ``.faults``, ``.restart()``, ``.pause()``, ``.drop_connections()``,
    ``.failover()``; ``.config_entries``, what a layer's config holds for them."""

    def __init__(self, servers: list[Server]):
        self.servers = servers

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    @property
    def url(self) -> str:
        return self.servers[0].url

    @property
    def config_entries(self) -> list[Any]:
        """Each server as a layer's config names it (see :meth:`Server.config_entry`)."""
        return [server.config_entry() for server in self.servers]

    @property
    def restartable(self) -> bool:
        return all(server.restartable for server in self.servers)

    @property
    def faults(self) -> frozenset[Fault]:
        """What every one of the servers offers."""
        return frozenset.intersection(*(server.faults for server in self.servers))

    def restart(self, keep_state: bool = False) -> None:
        """Restart every server, one after the other, each on its own port again (state lost,
        unless ``keep_state``: see :meth:`Server.restart`)."""
        for server in self.servers:
            server.restart(keep_state=keep_state)

    def pause(self, seconds: float) -> None:
        """Suspend every server for ``seconds``, then resume them (blocks: call it from a thread
        where an event loop must go on meanwhile)."""
        suspended: list[Server] = []
        try:
            for server in self.servers:
                server.suspend()
                suspended.append(server)
            time.sleep(seconds)
        finally:
            for server in suspended:
                server.resume()

    def drop_connections(self) -> int:
        return sum(server.drop_connections() for server in self.servers)

    def failover(self) -> None:
        for server in self.servers:
            server.failover()

    def describe(self) -> str:
        """Each server's URL and where it runs, on one line (the run's header shows it)."""
        return ", ".join(f"{server.url} ({server.origin})" for server in self.servers)

    def __getitem__(self, index: int) -> Server:
        return self.servers[index]

    def __iter__(self) -> Iterator[Server]:
        return iter(self.servers)

    def __len__(self) -> int:
        return len(self.servers)

    def __repr__(self) -> str:
        return f"<Servers {self.urls}>"
