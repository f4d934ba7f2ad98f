"""Pausing a server by pid: SIGSTOP to every process it runs as, SIGCONT to the same ones later.

A paused server keeps its sockets open (the kernel still accepts connections into the backlog)
but answers nothing: what a layer sees when its server hangs, swaps or is stopped in a debugger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence

import psutil

from .handles import ServerError

STOP_WAIT = 5.0  # seconds for the kernel to report a SIGSTOPped process as stopped


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, parents first: a server that forks (RabbitMQ's launcher,
    its Erlang VM and the VM's helpers, some of which start sessions of their own, so a process
    group would miss them)."""
    try:
        root = psutil.Process(pid)
        return [pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        raise ServerError(f"process {pid} is gone: nothing to pause") from None


def suspend_pids(pids: Sequence[int]) -> list[int]:
    """SIGSTOP each of ``pids``; returns once every one that still exists is stopped (those it
    stopped, for :func:`resume_pids`)."""
    stopped: list[int] = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # a short-lived helper may have ended
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
    deadline = time.monotonic() + STOP_WAIT
    while not all(_is_stopped(pid) for pid in stopped):
        if time.monotonic() > deadline:
            resume_pids(stopped)
            raise ServerError(f"processes {stopped} did not stop within {STOP_WAIT} s of SIGSTOP")
        time.sleep(0.01)
    return stopped


def resume_pids(pids: Sequence[int]) -> None:
    """SIGCONT each of ``pids``, children first, so no parent runs on while its child still sleeps."""
    for pid in reversed(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _is_stopped(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return True  # nothing left to run
    return status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP, psutil.STATUS_ZOMBIE)
