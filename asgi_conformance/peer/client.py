"""The test process's handle on one peer process (:class:`Peer`).

A peer is a fresh interpreter (never a fork) running ``python -m asgi_conformance.peer``; its
first request names the layer's dotted path and config, and it builds the layer exactly as the
test process does. Every call has a time limit; a peer that does not answer in time is killed,
and a peer that dies turns every pending and later call into :class:`PeerDied` with its exit
status and the tail of its stderr. A peer whose parent vanishes sees end-of-file and exits.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import IO, Any, cast

from .errors import PeerCommandError, PeerDied, PeerFailure, PeerTimeout
from .frames import Reply, Request, read_frame, write_frame
from .pending import Pending

Message = dict[str, Any]
STDERR_KEPT = 8000  # characters of the peer's stderr kept for error messages
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds asgi_conformance/


class StderrTail:
    """The last ``limit`` characters a peer wrote to stderr, fed line by line from a thread."""

    def __init__(self, limit: int = STDERR_KEPT):
        self.limit = limit
        self._parts: deque[str] = deque()
        self._size = 0
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            while self._size > self.limit and len(self._parts) > 1:
                self._size -= len(self._parts.popleft())

    def text(self) -> str:
        with self._lock:
            return "".join(self._parts)[-self.limit:]


class Peer:
    """A peer process running the layer ``dotted_path(**config)``; see the module docstring.

    Blocking methods (``send``, ``receive``, ...) each have an ``a``-prefixed coroutine twin
    (``asend``, ``areceive``, ...) for async tests. ``receive`` returns None when nothing
    arrived within its ``timeout`` (messages are dicts, never None).
    """

    def __init__(self, dotted_path: str, config: dict[str, Any], *, name: str = "peer",
                 call_timeout: float = 10.0, start_timeout: float = 30.0):
        self.name = name
        self.call_timeout = call_timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, Pending] = {}
        self._lock = threading.Lock()
        self._dead = False
        self._stderr = StderrTail()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "asgi_conformance.peer"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
        self._requests, self._replies, self._errors = _pipes(self.process)
        self._threads = [threading.Thread(target=self._read_replies, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for thread in self._threads:
            thread.start()
        self._start_args: dict[str, Any] = {"dotted_path": dotted_path, "config": config}
        self._hello = self._submit("start", {
            "dotted_path": dotted_path, "config": dict(config), "peer_id": name,
            "sys_path": [entry for entry in sys.path if isinstance(entry, str)]})
        self._start_timeout = start_timeout

    def wait_ready(self) -> Peer:
        """Block until the peer has built its layer (raises, and ends the peer, if it could not)."""
        try:
            self._outcome("start", self._start_args, self._hello, self._start_timeout,
                          self._hello.done.wait(self._start_timeout))
        except PeerFailure:
            self.kill()
            raise
        return self

    async def await_ready(self) -> Peer:
        try:
            await self._await_outcome("start", self._start_args, self._hello, self._start_timeout)
        except PeerFailure:
            self.kill()
            raise
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def stderr_tail(self) -> str:
        return self._stderr.text()

    # --- calls ---------------------------------------------------------------------------
    def call(self, command: str, args: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Run ``command`` in the peer and return its result, within ``timeout`` seconds."""
        args = args or {}
        timeout = self.call_timeout if timeout is None else timeout
        pending = self._submit(command, args)
        return self._outcome(command, args, pending, timeout, pending.done.wait(timeout))

    async def acall(self, command: str, args: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        args = args or {}
        timeout = self.call_timeout if timeout is None else timeout
        return await self._await_outcome(command, args, self._submit(command, args), timeout)

    def _submit(self, command: str, args: dict[str, Any]) -> Pending:
        pending = Pending()
        with self._lock:
            request_id = next(self._ids)
            if self._dead:
                pending.finish(None)
                return pending
            self._pending[request_id] = pending
            try:
                write_frame(self._requests, Request(request_id, command, args))
            except (BrokenPipeError, OSError, ValueError):
                self._pending.pop(request_id, None)
                pending.finish(None)
        return pending

    async def _await_outcome(self, command: str, args: dict[str, Any], pending: Pending, timeout: float) -> Any:
        try:
            await asyncio.wait_for(pending.future(), timeout)
            answered = True
        except asyncio.TimeoutError:
            answered = False
        return self._outcome(command, args, pending, timeout, answered)

    def _outcome(self, command: str, args: dict[str, Any], pending: Pending, timeout: float, answered: bool) -> Any:
        call = f"{command}({_brief(args)})"
        if not answered:
            self.kill()
            raise PeerTimeout(f"{self._who()} did not answer {call} within {timeout:g} s; "
                              "the peer was killed")
        if pending.reply is None:
            raise PeerDied(f"{self._who()} died before answering {call}: {self._death()}")
        remote = pending.reply.error
        if remote is not None:
            raise PeerCommandError(
                f"{self._who()}: {call} raised {remote.type_name}: {remote.message}\n"
                f"--- remote traceback ---\n{remote.traceback}", remote)
        return pending.reply.result

    # Blocking commands, then their coroutine twins.
    def ping(self) -> int:
        return cast(int, self.call("ping"))

    def new_channel(self, prefix: str | None = None) -> str:
        return cast(str, self.call("new_channel", {"prefix": prefix}))

    def send(self, channel: str, message: Message) -> None:
        self.call("send", {"channel": channel, "message": message})

    def receive(self, channel: str, timeout: float | None = 5.0) -> Message | None:
        """The next message, or None if none came within ``timeout`` (None: wait for ever)."""
        return cast("Message | None", self.call("receive", {"channel": channel, "timeout": timeout},
                                                timeout=self._with_margin(timeout)))

    def group_add(self, group: str, channel: str) -> None:
        self.call("group_add", {"group": group, "channel": channel})

    def group_discard(self, group: str, channel: str) -> None:
        self.call("group_discard", {"group": group, "channel": channel})

    def group_send(self, group: str, message: Message) -> None:
        self.call("group_send", {"group": group, "message": message})

    def flush(self) -> None:
        self.call("flush")

    def send_many(self, channel: str, count: int, type: str = "xp.seq") -> int:  # noqa: A002
        """Send ``{"type", "sender": peer name, "seq": 0..count-1}`` in order."""
        return cast(int, self.call("send_many", {"channel": channel, "count": count, "type": type},
                                   timeout=self.call_timeout + count * 0.1))

    def traffic(self, channel: str | None = None, group: str | None = None, warmup: int = 10) -> Message:
        """Start endless send/receive (and group) traffic; returns once ``warmup`` rounds ran."""
        return cast(Message, self.call("traffic", {"channel": channel, "group": group, "warmup": warmup}))

    def traffic_status(self) -> Message:
        return cast(Message, self.call("traffic_status"))

    async def anew_channel(self, prefix: str | None = None) -> str:
        return cast(str, await self.acall("new_channel", {"prefix": prefix}))

    async def asend(self, channel: str, message: Message) -> None:
        await self.acall("send", {"channel": channel, "message": message})

    async def areceive(self, channel: str, timeout: float | None = 5.0) -> Message | None:
        return cast("Message | None", await self.acall("receive", {"channel": channel, "timeout": timeout},
                                                       timeout=self._with_margin(timeout)))

    async def agroup_add(self, group: str, channel: str) -> None:
        await self.acall("group_add", {"group": group, "channel": channel})

    async def agroup_discard(self, group: str, channel: str) -> None:
        await self.acall("group_discard", {"group": group, "channel": channel})

    async def agroup_send(self, group: str, message: Message) -> None:
        await self.acall("group_send", {"group": group, "message": message})

    async def aflush(self) -> None:
        await self.acall("flush")

    async def asend_many(self, channel: str, count: int, type: str = "xp.seq") -> int:  # noqa: A002
        return cast(int, await self.acall("send_many", {"channel": channel, "count": count, "type": type},
                                          timeout=self.call_timeout + count * 0.1))

    async def atraffic(self, channel: str | None = None, group: str | None = None, warmup: int = 10) -> Message:
        return cast(Message, await self.acall("traffic", {"channel": channel, "group": group, "warmup": warmup}))

    def _with_margin(self, timeout: float | None) -> float:
        """The call's own limit: the receive's timeout plus time for the round trip."""
        return self.call_timeout if timeout is None else timeout + self.call_timeout

    # --- ending --------------------------------------------------------------------------
    def end_input(self) -> None:
        """Close the peer's stdin: at end of file it closes its layer and exits."""
        try:
            self._requests.close()
        except OSError:
            pass

    def kill(self) -> int:
        """SIGKILL the peer and reap it; returns its exit status."""
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        status = self.process.wait()
        self._join_threads()
        return status

    def close(self, grace: float = 3.0) -> int:
        """Let the peer close its layer and exit (end of its stdin); kill it if it lingers."""
        self.end_input()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        return self.kill()

    def _join_threads(self) -> None:
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(2)

    def _read_replies(self) -> None:
        try:
            while (reply := read_frame(self._replies, Reply)) is not None:
                with self._lock:
                    pending = self._pending.pop(reply.request_id, None)
                if pending is not None:
                    pending.finish(reply)
        except Exception as exc:  # noqa: BLE001 - a garbled pipe is a dead peer
            self._stderr.add(f"\n[asgi-conformance: reply pipe broken, peer killed: {exc}]\n")
            self.process.kill()
        finally:
            with self._lock:
                self._dead = True
                orphans, self._pending = list(self._pending.values()), {}
            for pending in orphans:
                pending.finish(None)

    def _read_stderr(self) -> None:
        for line in iter(self._errors.readline, b""):
            self._stderr.add(line.decode("utf-8", "replace"))

    def _who(self) -> str:
        return f"peer {self.name!r} (pid {self.process.pid})"

    def _death(self) -> str:
        try:
            status: int | None = self.process.wait(2)
        except subprocess.TimeoutExpired:
            status = None
        if status is None:
            what = "its reply pipe closed"
        elif status < 0:
            what = f"killed by {signal.Signals(-status).name}"
        else:
            what = f"exit status {status}"
        self._join_threads()
        tail = self.stderr_tail().strip()
        return what + (f"; its stderr ends with:\n{tail}" if tail else "; it wrote nothing to stderr")


def _pipes(process: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes], IO[bytes]]:
    """The peer's stdin, stdout and stderr, all three pipes by construction."""
    if process.stdin is None or process.stdout is None or process.stderr is None:
        raise RuntimeError("a peer is always started with three pipes")
    return process.stdin, process.stdout, process.stderr


def _brief(args: dict[str, Any], limit: int = 200) -> str:
    text = ", ".join(f"{key}={value!r}" for key, value in args.items())
    return text if len(text) <= limit else text[:limit] + "..."
