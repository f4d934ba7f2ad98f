"""A second process that drives the same channel layer on command, for the cross-process tests.

``python -m asgi_conformance.peer`` is started (a fresh interpreter, never a fork) by a
:class:`Peer` in the test process. Its first request names the layer's dotted path and
config; it builds the layer exactly as the test process does and then runs each command it
is sent (send, receive, group ops, flush, ...) as its own task, so a waiting receive does
not block the next command. Requests and replies travel over the peer's stdin/stdout as
length-prefixed pickle frames; the peer moves its own fd 0/1 aside first, so anything the
layer prints goes to stderr and cannot corrupt the pipe.

Every parent-side call has a time limit; a peer that does not answer in time is killed, and
a peer that dies turns every pending and later call into :class:`PeerDied` with its exit
status and the tail of its stderr. A peer whose parent vanishes sees end-of-file and exits.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import itertools
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import traceback
from collections import deque
from pathlib import Path

_HEADER = struct.Struct(">2sI")  # magic, length: stray bytes on the pipe are caught, not obeyed
_MAGIC = b"\xacP"
_STDERR_KEPT = 8000  # characters of the peer's stderr kept for error messages


# --- frames (both sides) ------------------------------------------------------------------

def write_frame(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(_MAGIC, len(data)) + data)
    stream.flush()


def read_frame(stream):
    """The next object, or None at end of file (the other side closed or died)."""
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    magic, size = _HEADER.unpack(header)
    if magic != _MAGIC:
        raise ValueError(f"garbled frame: the pipe carried {header!r}, not a frame header")
    body = _read_exactly(stream, size)
    if body is None:
        return None
    return pickle.loads(body)


def _read_exactly(stream, size: int) -> bytes | None:
    chunks, missing = [], size
    while missing:
        chunk = stream.read(missing)
        if not chunk:
            return None
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


# --- the peer process ----------------------------------------------------------------------

def main() -> None:
    """Entry point of ``python -m asgi_conformance.peer``."""
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the layer reading stdin gets EOF, not our frames
    os.dup2(2, 1)  # the layer's prints (Python or C level) go to stderr
    os.close(devnull)
    sys.stdout = sys.stderr
    status = 0
    try:
        asyncio.run(_serve(requests, replies))
    except BaseException:  # noqa: BLE001 - shown in the parent's PeerDied message via stderr
        traceback.print_exc()
        status = 1
    finally:
        sys.stderr.flush()
        os._exit(status)  # a layer's leftover non-daemon thread must not keep the peer alive


async def _serve(requests, replies) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()
    threading.Thread(target=_read_requests, args=(requests, loop, inbox), daemon=True).start()
    hello = await inbox.get()
    if hello is None:
        return
    try:
        server = await _PeerServer.build(replies, **hello["args"])
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, then we exit
        _reply(replies, hello["id"], error=exc)
        return
    _reply(replies, hello["id"], result={"pid": os.getpid(), "layer": type(server.layer).__qualname__})
    await server.run(inbox)


def _read_requests(stream, loop, inbox) -> None:
    try:
        while (request := read_frame(stream)) is not None:
            loop.call_soon_threadsafe(inbox.put_nowait, request)
    except Exception:  # noqa: BLE001 - a broken pipe means the parent is gone: same as EOF
        traceback.print_exc()
    finally:
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, None)
        except RuntimeError:  # the loop is already closed
            pass


_reply_lock = threading.Lock()


def _reply(replies, request_id: int, result=None, error: BaseException | None = None) -> None:
    if error is None:
        frame = {"id": request_id, "ok": True, "result": result}
        try:
            pickle.dumps(frame)
        except Exception as exc:  # noqa: BLE001
            frame, error = None, TypeError(f"the command's result cannot be sent back: {exc!r}")
    if error is not None:
        frame = {"id": request_id, "ok": False, "error": {
            "type": f"{type(error).__module__}.{type(error).__qualname__}",
            "mro": [cls.__name__ for cls in type(error).__mro__],
            "message": str(error),
            "traceback": "".join(traceback.format_exception(error)),
        }}
    with _reply_lock:
        try:
            write_frame(replies, frame)
        except (BrokenPipeError, ValueError):  # parent gone: nothing left to tell
            pass


class _PeerServer:
    """Runs the commands of one peer on its layer; each ``cmd_*`` method is one command."""

    def __init__(self, replies, peer_id: str, layer):
        self.replies = replies
        self.peer_id = peer_id
        self.layer = layer
        self.tasks: set[asyncio.Task] = set()
        self.traffic = {"iterations": 0, "missed": 0, "error": None}

    @classmethod
    async def build(cls, replies, *, dotted_path: str, config: dict, peer_id: str, sys_path: list[str]):
        sys.path[:0] = [entry for entry in sys_path if entry not in sys.path]
        module_name, _, attribute = dotted_path.rpartition(".")
        factory = getattr(importlib.import_module(module_name), attribute)
        return cls(replies, peer_id, factory(**config))  # built inside the loop, as Channels does

    async def run(self, inbox: asyncio.Queue) -> None:
        while (request := await inbox.get()) is not None:
            task = asyncio.create_task(self.handle(request))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        for task in list(self.tasks):  # the parent closed the pipe: stop work, close the layer
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.close_layer()

    async def handle(self, request: dict) -> None:
        method = getattr(self, "cmd_" + request["command"], None)
        try:
            if method is None:
                raise ValueError(f"unknown peer command {request['command']!r}")
            result = await method(**request["args"])
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the test
            _reply(self.replies, request["id"], error=exc)
        else:
            _reply(self.replies, request["id"], result=result)

    async def close_layer(self) -> None:
        """Release connections; never flush: the server state belongs to the test."""
        for name in ("close", "close_pools"):
            method = getattr(self.layer, name, None)
            if method is not None:
                try:
                    result = method()
                    if inspect.isawaitable(result):
                        await asyncio.wait_for(result, 2)
                except Exception:  # noqa: BLE001
                    traceback.print_exc()
                return

    # --- commands ----------------------------------------------------------------------
    async def cmd_ping(self):
        return os.getpid()

    async def cmd_new_channel(self, prefix=None):
        return await (self.layer.new_channel() if prefix is None else self.layer.new_channel(prefix))

    async def cmd_send(self, channel, message):
        await self.layer.send(channel, message)

    async def cmd_receive(self, channel, timeout=None):
        try:
            return await asyncio.wait_for(self.layer.receive(channel), timeout)
        except asyncio.TimeoutError:
            return None

    async def cmd_group_add(self, group, channel):
        await self.layer.group_add(group, channel)

    async def cmd_group_discard(self, group, channel):
        await self.layer.group_discard(group, channel)

    async def cmd_group_send(self, group, message):
        await self.layer.group_send(group, message)

    async def cmd_flush(self):
        await self.layer.flush()

    async def cmd_send_many(self, channel, count, type="xp.seq"):  # noqa: A002 - the frame field is named type
        for seq in range(count):
            await self.layer.send(channel, {"type": type, "sender": self.peer_id, "seq": seq})
        return count

    async def cmd_traffic(self, channel=None, group=None, warmup=10):
        """Start sending and receiving in a loop that runs until the peer dies; answer after
        ``warmup`` rounds, so the caller knows the peer is in the middle of traffic."""
        own = await self.layer.new_channel()
        if group is not None:
            await self.layer.group_add(group, own)
        warmed = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._traffic(channel or own, own, group, warmup, warmed))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return await warmed

    async def _traffic(self, channel, own, group, warmup, warmed) -> None:
        # Receives wait briefly: a miss is counted, not waited out, so the loop keeps moving
        # (delivery itself is what the other requirements check).
        try:
            for seq in itertools.count():
                message = {"type": "xp.traffic", "sender": self.peer_id, "seq": seq}
                await _tolerating_full(self.layer.send(channel, message))
                receives = [channel]
                if group is not None:
                    await self.layer.group_send(group, message)
                    receives.append(own)
                for source in receives:
                    if await self.cmd_receive(source, timeout=0.2) is None:
                        self.traffic["missed"] += 1
                self.traffic["iterations"] = seq + 1
                if seq + 1 == warmup:
                    warmed.set_result({**self.traffic, "channel": own})
        except Exception as exc:  # noqa: BLE001
            self.traffic["error"] = f"{type(exc).__name__}: {exc}"
            if not warmed.done():
                warmed.set_exception(exc)

    async def cmd_traffic_status(self):
        return dict(self.traffic)


async def _tolerating_full(operation) -> None:
    try:
        await operation
    except Exception as exc:
        if not any(cls.__name__ == "ChannelFull" for cls in type(exc).__mro__):
            raise


# --- the test process side ------------------------------------------------------------------

class PeerFailure(Exception):
    """Something went wrong with a peer process; the message says which peer and command."""


class PeerCommandError(PeerFailure):
    """A command raised in the peer; the remote class, message and traceback are attached."""

    def __init__(self, text: str, remote: dict):
        super().__init__(text)
        self.remote_type: str = remote["type"]
        self.remote_mro: list[str] = remote["mro"]
        self.remote_message: str = remote["message"]
        self.remote_traceback: str = remote["traceback"]


class PeerTimeout(PeerFailure):
    """The peer did not answer in time; it has been killed, its state being unknown."""


class PeerDied(PeerFailure):
    """The peer process ended (crashed, was killed, or failed to start)."""


class _Pending:
    """One request waiting for its reply, awaitable from a thread or an event loop."""

    def __init__(self):
        self.done = threading.Event()
        self.reply: dict | None = None  # None once done means the peer died
        self._wakers: list = []
        self._lock = threading.Lock()

    def finish(self, reply: dict | None) -> None:
        with self._lock:
            self.reply = reply
            self.done.set()
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def future(self) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def wake():
            try:
                loop.call_soon_threadsafe(lambda: future.done() or future.set_result(None))
            except RuntimeError:  # that loop has ended: nobody waits any more
                pass

        with self._lock:
            if self.done.is_set():
                future.set_result(None)
            else:
                self._wakers.append(wake)
        return future


class Peer:
    """A peer process running the layer ``dotted_path(**config)``; see the module docstring.

    Blocking methods (``send``, ``receive``, ...) each have an ``a``-prefixed coroutine twin
    (``asend``, ``areceive``, ...) for async tests. ``receive`` returns None when nothing
    arrived within its ``timeout`` (messages are dicts, never None).
    """

    def __init__(self, dotted_path: str, config: dict, *, name: str = "peer",
                 call_timeout: float = 10.0, start_timeout: float = 30.0):
        self.name = name
        self.call_timeout = call_timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._dead = False
        self._stderr: deque[str] = deque()
        self._stderr_size = 0
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "asgi_conformance.peer"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
        self._threads = [threading.Thread(target=self._read_replies, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for thread in self._threads:
            thread.start()
        self._hello = self._submit("start", {
            "dotted_path": dotted_path, "config": dict(config), "peer_id": name,
            "sys_path": [entry for entry in sys.path if isinstance(entry, str)]})
        self._start_timeout = start_timeout
        self._start_args = {"dotted_path": dotted_path, "config": config}

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
        with self._lock:
            return "".join(self._stderr)[-_STDERR_KEPT:]

    # --- calls ---------------------------------------------------------------------------
    def call(self, command: str, args: dict | None = None, *, timeout: float | None = None):
        """Run ``command`` in the peer and return its result, within ``timeout`` seconds."""
        args = args or {}
        timeout = self.call_timeout if timeout is None else timeout
        pending = self._submit(command, args)
        return self._outcome(command, args, pending, timeout, pending.done.wait(timeout))

    async def acall(self, command: str, args: dict | None = None, *, timeout: float | None = None):
        args = args or {}
        timeout = self.call_timeout if timeout is None else timeout
        return await self._await_outcome(command, args, self._submit(command, args), timeout)

    def _submit(self, command: str, args: dict) -> _Pending:
        pending = _Pending()
        with self._lock:
            request_id = next(self._ids)
            if self._dead:
                pending.finish(None)
                return pending
            self._pending[request_id] = pending
            try:
                write_frame(self.process.stdin, {"id": request_id, "command": command, "args": args})
            except (BrokenPipeError, OSError, ValueError):
                self._pending.pop(request_id, None)
                pending.finish(None)
        return pending

    async def _await_outcome(self, command, args, pending: _Pending, timeout: float):
        try:
            await asyncio.wait_for(pending.future(), timeout)
            answered = True
        except asyncio.TimeoutError:
            answered = False
        return self._outcome(command, args, pending, timeout, answered)

    def _outcome(self, command: str, args: dict, pending: _Pending, timeout: float, answered: bool):
        call = f"{command}({_brief(args)})"
        if not answered:
            self.kill()
            raise PeerTimeout(f"{self._who()} did not answer {call} within {timeout:g} s; "
                              "the peer was killed")
        if pending.reply is None:
            raise PeerDied(f"{self._who()} died before answering {call}: {self._death()}")
        if not pending.reply["ok"]:
            remote = pending.reply["error"]
            raise PeerCommandError(
                f"{self._who()}: {call} raised {remote['type']}: {remote['message']}\n"
                f"--- remote traceback ---\n{remote['traceback']}", remote)
        return pending.reply["result"]

    # Blocking commands, then their coroutine twins.
    def ping(self) -> int:
        return self.call("ping")

    def new_channel(self, prefix: str | None = None) -> str:
        return self.call("new_channel", {"prefix": prefix})

    def send(self, channel: str, message: dict) -> None:
        self.call("send", {"channel": channel, "message": message})

    def receive(self, channel: str, timeout: float | None = 5.0) -> dict | None:
        """The next message, or None if none came within ``timeout`` (None: wait for ever)."""
        return self.call("receive", {"channel": channel, "timeout": timeout}, timeout=self._with_margin(timeout))

    def group_add(self, group: str, channel: str) -> None:
        self.call("group_add", {"group": group, "channel": channel})

    def group_discard(self, group: str, channel: str) -> None:
        self.call("group_discard", {"group": group, "channel": channel})

    def group_send(self, group: str, message: dict) -> None:
        self.call("group_send", {"group": group, "message": message})

    def flush(self) -> None:
        self.call("flush")

    def send_many(self, channel: str, count: int, type: str = "xp.seq") -> int:  # noqa: A002
        """Send ``{"type", "sender": peer name, "seq": 0..count-1}`` in order."""
        return self.call("send_many", {"channel": channel, "count": count, "type": type},
                         timeout=self.call_timeout + count * 0.1)

    def traffic(self, channel: str | None = None, group: str | None = None, warmup: int = 10) -> dict:
        """Start endless send/receive (and group) traffic; returns once ``warmup`` rounds ran."""
        return self.call("traffic", {"channel": channel, "group": group, "warmup": warmup})

    def traffic_status(self) -> dict:
        return self.call("traffic_status")

    async def anew_channel(self, prefix: str | None = None) -> str:
        return await self.acall("new_channel", {"prefix": prefix})

    async def asend(self, channel: str, message: dict) -> None:
        await self.acall("send", {"channel": channel, "message": message})

    async def areceive(self, channel: str, timeout: float | None = 5.0) -> dict | None:
        return await self.acall("receive", {"channel": channel, "timeout": timeout},
                                timeout=self._with_margin(timeout))

    async def agroup_add(self, group: str, channel: str) -> None:
        await self.acall("group_add", {"group": group, "channel": channel})

    async def agroup_discard(self, group: str, channel: str) -> None:
        await self.acall("group_discard", {"group": group, "channel": channel})

    async def agroup_send(self, group: str, message: dict) -> None:
        await self.acall("group_send", {"group": group, "message": message})

    async def aflush(self) -> None:
        await self.acall("flush")

    async def asend_many(self, channel: str, count: int, type: str = "xp.seq") -> int:  # noqa: A002
        return await self.acall("send_many", {"channel": channel, "count": count, "type": type},
                                timeout=self.call_timeout + count * 0.1)

    async def atraffic(self, channel: str | None = None, group: str | None = None, warmup: int = 10) -> dict:
        return await self.acall("traffic", {"channel": channel, "group": group, "warmup": warmup})

    def _with_margin(self, timeout: float | None) -> float:
        """The call's own limit: the receive's timeout plus time for the round trip."""
        return self.call_timeout if timeout is None else timeout + self.call_timeout

    # --- ending --------------------------------------------------------------------------
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
        try:
            self.process.stdin.close()
        except OSError:
            pass
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
            while (reply := read_frame(self.process.stdout)) is not None:
                with self._lock:
                    pending = self._pending.pop(reply["id"], None)
                if pending is not None:
                    pending.finish(reply)
        except Exception as exc:  # noqa: BLE001 - a garbled pipe is a dead peer
            self._note_stderr(f"\n[asgi-conformance: reply pipe broken, peer killed: {exc}]\n")
            self.process.kill()
        finally:
            with self._lock:
                self._dead = True
                orphans, self._pending = list(self._pending.values()), {}
            for pending in orphans:
                pending.finish(None)

    def _read_stderr(self) -> None:
        for line in iter(self.process.stderr.readline, b""):
            self._note_stderr(line.decode("utf-8", "replace"))

    def _note_stderr(self, text: str) -> None:
        with self._lock:
            self._stderr.append(text)
            self._stderr_size += len(text)
            while self._stderr_size > _STDERR_KEPT and len(self._stderr) > 1:
                self._stderr_size -= len(self._stderr.popleft())

    def _who(self) -> str:
        return f"peer {self.name!r} (pid {self.process.pid})"

    def _death(self) -> str:
        try:
            status = self.process.wait(2)
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


def _brief(args: dict, limit: int = 200) -> str:
    text = ", ".join(f"{key}={value!r}" for key, value in args.items())
    return text if len(text) <= limit else text[:limit] + "..."


class PeerGroup:
    """Starts peers for one test, all building the same layer, and ends them all afterwards."""

    def __init__(self, dotted_path: str, config: dict, *, call_timeout: float = 10.0,
                 start_timeout: float = 30.0):
        self.dotted_path = dotted_path
        self.config = dict(config)
        self.call_timeout = call_timeout
        self.start_timeout = start_timeout
        self.peers: list[Peer] = []

    def _spawn(self, overrides: dict) -> Peer:
        peer = Peer(self.dotted_path, {**self.config, **overrides}, name=f"peer-{len(self.peers) + 1}",
                    call_timeout=self.call_timeout, start_timeout=self.start_timeout)
        self.peers.append(peer)
        return peer

    def start(self, **overrides) -> Peer:
        """One ready peer whose layer is ``dotted_path(**config, **overrides)``."""
        return self._spawn(overrides).wait_ready()

    def start_many(self, count: int, **overrides) -> list[Peer]:
        """``count`` ready peers, started side by side (start-up costs overlap)."""
        peers = [self._spawn(overrides) for _ in range(count)]
        return [peer.wait_ready() for peer in peers]

    async def astart(self, **overrides) -> Peer:
        return await self._spawn(overrides).await_ready()

    async def astart_many(self, count: int, **overrides) -> list[Peer]:
        peers = [self._spawn(overrides) for _ in range(count)]
        return list(await asyncio.gather(*(peer.await_ready() for peer in peers)))

    def close(self) -> None:
        """End every peer: closing stdin lets each release its layer; stragglers are killed."""
        for peer in self.peers:
            try:
                peer.process.stdin.close()
            except OSError:
                pass
        for peer in self.peers:
            peer.close()


if __name__ == "__main__":
    main()
