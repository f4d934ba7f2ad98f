"""Shared bits of the IPC layer tests: unique prefixes, child processes, cleanup."""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import posix_ipc

CHILD = Path(__file__).with_name("ipc_child.py")
REPO = Path(__file__).resolve().parent.parent
NO_C_HOT_PATH = "the C hot path was not built (no C compiler?)"  # why a C-path test skips


def unique_prefix(stem: str = "t") -> str:
    return f"test-{stem}-{os.getpid()}-{secrets.token_hex(4)}"


def shm_path(prefix: str) -> Path:
    return Path("/dev/shm") / f"asgi-ipc.{prefix}"


def removal_orders(count: int) -> dict[str, list[int]]:
    """Orders to take ``count`` items (made 0 first) out of a linked list in: from either end,
    from the middle out, and shuffled (a list walked from its head pays for some of these)."""
    middle_out = sorted(range(count), key=lambda n: abs(n - count // 2))
    shuffled = list(range(count))
    random.Random(18).shuffle(shuffled)
    return {"oldest first": list(range(count)), "newest first": list(range(count))[::-1],
            "middle out": middle_out, "shuffled": shuffled}


def remove_segment(prefix: str) -> None:
    try:
        posix_ipc.unlink_shared_memory(f"/asgi-ipc.{prefix}")
    except posix_ipc.ExistentialError:
        pass


class Child:
    """tests/ipc_child.py in its own process, stopped at a pause point, then SIGKILLed."""

    def __init__(self, prefix: str, action: str, channel: str = "-", pause_at: str | None = None):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("ASGI_IPC_TEST_PAUSE_AT", None)
        if pause_at:
            env["ASGI_IPC_TEST_PAUSE_AT"] = pause_at
        self.process = subprocess.Popen([sys.executable, str(CHILD), prefix, action, channel], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_paused(self) -> str:
        line = self.process.stdout.readline()  # blocks until the child says where it stopped
        if not line.startswith("ASGI_IPC_PAUSED"):
            self.kill()
            raise AssertionError(f"child did not pause: {line!r} {self.process.stderr.read()}")
        return line.strip()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process.stdout.close()
        self.process.stderr.close()


def send_past_a_killed_lock_holder(layer, channel: str, message: dict) -> None:
    """Another process takes the segment lock and is SIGKILLed holding it: a send made
    meanwhile waits (it must not go through under someone else's lock), then goes through."""
    import asyncio
    import threading

    child = Child(layer.prefix, "hold-lock")
    child.wait_paused()
    sent = threading.Event()

    def blocked_send():
        asyncio.run(layer.send(channel, message))
        sent.set()

    thread = threading.Thread(target=blocked_send, daemon=True)
    thread.start()
    assert not sent.wait(0.5), "send went through while another process held the segment lock"
    child.kill()
    assert sent.wait(30), "the lock of a killed process was never released"
    thread.join()
