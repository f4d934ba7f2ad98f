"""What every server kind yields: a handle per server, and one for the set a context started."""

from __future__ import annotations

from collections.abc import Iterator


class ServerError(Exception):
    """A server could not be found, started or restarted; the message is one line for the user."""


class Server:
    """One server's address, and the means to restart it in place (when this process owns it).

    This base is a server somebody else runs (an address from the environment): it can be
    neither restarted nor stopped from here. Kinds that start their own override both.
    """

    restartable = False

    def __init__(self, url: str):
        self.url = url

    def restart(self) -> None:
        raise ServerError(f"{self.url} was given by the environment, not started here: it cannot be restarted")

    def stop(self) -> None:
        """Nothing to stop: somebody else runs this server."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class Servers:
    """What the context managers yield: ``.urls`` (and ``.url``, the first), ``.restart()``."""

    def __init__(self, servers: list[Server]):
        self.servers = servers

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    @property
    def url(self) -> str:
        return self.servers[0].url

    @property
    def restartable(self) -> bool:
        return all(server.restartable for server in self.servers)

    def restart(self) -> None:
        """Restart every server, one after the other, each on its own port again."""
        for server in self.servers:
            server.restart()

    def __getitem__(self, index: int) -> Server:
        return self.servers[index]

    def __iter__(self) -> Iterator[Server]:
        return iter(self.servers)

    def __len__(self) -> int:
        return len(self.servers)

    def __repr__(self) -> str:
        return f"<Servers {self.urls}>"
