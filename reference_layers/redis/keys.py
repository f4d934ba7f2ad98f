"""Redis key names of one layer prefix (see scripts.py for what each key holds)."""

from __future__ import annotations

import re

from ..core.names import non_local_name


class KeySpace:
    def __init__(self, prefix: str):
        self.prefix = prefix + ":"
        # SCAN pattern matching exactly this prefix's keys (glob characters in it escaped).
        self.pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + ":*"
        self.queue_pattern = self.pattern[:-1] + "q:*"

    @staticmethod
    def capacity_key(channel: str) -> str:
        """The name whose messages count together: the channel, or its process's ``p!``."""
        return non_local_name(channel)

    def queue(self, channel: str) -> str:
        return f"{self.prefix}q:{channel}"

    def queues_of(self, capacity_key: str) -> str:
        """The queue key of a member of ``capacity_key`` without its local name (``local_name``)."""
        return f"{self.prefix}q:{capacity_key}"

    def inbox(self, capacity_key: str) -> str:
        return f"{self.prefix}i:{capacity_key}"

    def inbox_of(self, channel: str) -> tuple[str, str]:
        """(the inbox that may hold group copies for ``channel``, its local name); ('', '') if none."""
        key = self.capacity_key(channel)
        return (self.inbox(key), channel[len(key):]) if key != channel else ("", "")

    @property
    def flush_epoch(self) -> str:
        """The shard's flush epoch (and the pub/sub channel its flushes are told on, flushes.py)."""
        return f"{self.prefix}e"

    def epoch(self, capacity_key: str) -> str:
        """The flush epoch a pop of ``capacity_key`` reads: the shard's, the same for every key."""
        return self.flush_epoch

    def pop_keys(self, capacity_key: str) -> list[str]:
        """POP's KEYS for ``capacity_key`` (scripts.py): its count, bell, inbox and flush epoch."""
        return [self.count(capacity_key), self.bell(capacity_key), self.inbox(capacity_key), self.epoch(capacity_key)]

    def count(self, capacity_key: str) -> str:
        return f"{self.prefix}n:{capacity_key}"

    def bell(self, capacity_key: str) -> str:
        return f"{self.prefix}b:{capacity_key}"

    def taker(self, capacity_key: str) -> str:
        """The pub/sub channel a process's receiving loop takes its inbox entries on (deliveries.py)."""
        return f"{self.prefix}d:{capacity_key}"

    def taker_credit(self, capacity_key: str) -> str:
        """How many more entries GROUP_SEND may publish on ``taker`` (group_scripts.py)."""
        return f"{self.prefix}dc:{capacity_key}"

    def group_members(self, group: str) -> str:
        return f"{self.prefix}g:{group}"

    def group_capacities(self, group: str) -> str:
        return f"{self.prefix}gc:{group}"

    def process_members_stem(self, group: str) -> str:
        """The key of a process's members of ``group`` (their local names) without the process: this + ``p!``."""
        return f"{self.prefix}gm:{group}:"

    def roster_stem(self, group: str) -> str:
        """The key of a process's roster in ``group`` (its members' local names) without the process."""
        return f"{self.prefix}gn:{group}:"
