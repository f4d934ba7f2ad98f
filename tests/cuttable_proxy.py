"""A TCP proxy on loopback whose connections a test cuts at an exact point.

``rabbitmqctl close_all_connections`` (what FAULT-5 uses) takes a second or more to start, so it
cannot strike between two calls of a layer. A layer pointed at this proxy instead loses its
connections the moment the test says so: ``cut()`` closes both sides, and the server sees its
client go, as it would for a dropped connection, keeping its state. ``hold_replies()`` stops
forwarding what the server sends until the next cut, so a reply the server already sent (a
publisher confirm) is lost with the connection.
"""

from __future__ import annotations

import asyncio
import contextlib


class CuttableProxy:
    """Forwards ``127.0.0.1:port`` to ``target_port``; runs on the test's event loop."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = 0
        self.accepted = 0  # connections accepted so far
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._holding = False

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._tasks:  # each ends once both its ends are closed
            await asyncio.wait(self._tasks, timeout=5)

    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def hold_replies(self) -> None:
        """From now until the next cut, what the server sends is not passed on."""
        self._holding = True

    def cut(self) -> None:
        """Close every connection, both ends, at once."""
        self._holding = False
        writers, self._writers = self._writers, []
        for writer in writers:
            writer.transport.abort()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers += [client_writer, server_writer]
        await asyncio.gather(self._pump(client_reader, server_writer, replies=False),
                             self._pump(server_reader, client_writer, replies=True))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: bool) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if replies and self._holding:
                    continue  # lost with the connection when it is cut
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
