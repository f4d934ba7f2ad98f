"""``python -m reference_layers.ipc``: list, check or remove the layer's shared segments.

    --list               segments of this layer in /dev/shm, and whether a process uses them
    --check PREFIX       repair (if a process died mid-write) and check one segment
    --cleanup PREFIX...  remove segments no running process has attached (a crashed
                         deployment's leftovers); --force removes them even if in use
    --cleanup-all        remove every unused asgi-ipc segment of this user
    --stats PREFIX       print statistics() of one segment as JSON: messages waiting per
                         channel and the age of the oldest (read with --expiry, default 60)
    --channel NAME       with --stats: only these channels (repeatable); default every
                         channel holding a message

The counters of ChannelFull and missed group deliveries belong to a layer object, so --stats
prints zeros for them: read them from ``await layer.statistics()`` in the process.

"In use" is decided by the kernel: every attached process holds a shared fcntl lock on the
segment, so a segment whose lock can be taken exclusively belongs to nobody alive.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import posix_ipc

from ..core.statistics import Counters
from .consistency import check
from .locking import AttachLock
from .segment import Segment, segment_name
from .statistics import read_statistics

SHM_DIR = "/dev/shm"
NAME_PREFIX = "asgi-ipc."


def list_prefixes() -> list[str]:
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:  # pragma: no cover - not Linux
        return []
    return sorted(name[len(NAME_PREFIX):] for name in names if name.startswith(NAME_PREFIX))


def in_use(prefix: str) -> bool:
    """True if some live process has this segment attached."""
    shm = posix_ipc.SharedMemory(segment_name(prefix))
    try:
        return not AttachLock(shm.fd).try_exclusive()
    finally:
        shm.close_fd()  # closing our descriptor drops our probe lock


def state_of(prefix: str) -> str:
    """'in use', 'unused', or why it cannot be told: another user's segment (mode 0600) cannot
    be opened by this one, which must not end the listing of the others."""
    try:
        return "in use" if in_use(prefix) else "unused"
    except posix_ipc.PermissionsError:
        return "no permission (another user's segment)"
    except posix_ipc.ExistentialError:
        return "gone"


def remove(prefix: str, force: bool = False) -> str:
    """Unlink one segment unless a process uses it; returns what happened, in words."""
    name = segment_name(prefix)
    try:
        busy = in_use(prefix)
    except posix_ipc.ExistentialError:
        return f"{name}: no such segment"
    except posix_ipc.PermissionsError:
        return f"{name}: no permission to open it (another user's segment); not removed"
    if busy and not force:
        return f"{name}: in use by a running process; not removed (use --force to remove anyway)"
    posix_ipc.unlink_shared_memory(name)
    return f"{name}: removed" + (" (it was in use)" if busy else "")


def statistics(prefix: str, channels: list[str] | None, expiry: float) -> str:
    """statistics() of segment ``prefix`` as JSON (FileNotFoundError if there is none)."""
    segment = Segment(prefix, 0, 0o600, create=False)
    try:
        return read_statistics(segment, channels, expiry, Counters(), time.monotonic()).to_json()
    finally:
        segment.detach(unlink_if_last=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_layers.ipc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--check", metavar="PREFIX")
    parser.add_argument("--cleanup", nargs="+", metavar="PREFIX")
    parser.add_argument("--cleanup-all", action="store_true")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--stats", metavar="PREFIX")
    parser.add_argument("--channel", action="append", default=None)
    parser.add_argument("--expiry", type=float, default=60.0)
    args = parser.parse_args(argv)
    status = 0
    if args.list:
        for prefix in list_prefixes():
            print(f"{segment_name(prefix)}\t{state_of(prefix)}")
    if args.check:
        try:
            segment = Segment(args.check, 0, 0o600, create=False)
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 2
        try:
            problems = check(segment)
        finally:
            segment.detach(unlink_if_last=False)
        for problem in problems:
            print(problem)
        print(f"{segment.name}: {'consistent' if not problems else f'{len(problems)} problem(s)'}")
        status = 1 if problems else status
    if args.stats:
        try:
            print(statistics(args.stats, args.channel, args.expiry))
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 2
    prefixes = list(args.cleanup or [])
    if args.cleanup_all:
        prefixes += list_prefixes()
    for prefix in prefixes:
        outcome = remove(prefix, args.force)
        print(outcome)
        if ("in use" in outcome and not args.force) or "no permission" in outcome:
            status = 1
    if not (args.list or args.check or args.stats or prefixes or args.cleanup_all):
        parser.print_help()
    return status


if __name__ == "__main__":
    sys.exit(main())
