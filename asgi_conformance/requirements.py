"""The channel layer specification as data: one entry per requirement id.

The suite tags every test with one of these ids and the report prints this table, so a
failing line points at the sentence of the spec it checks. MUST rules fail a run; SHOULD
rules are reported as deviations unless ``--asgi-strict`` turns them into failures.
"""

from __future__ import annotations

from dataclasses import dataclass

MUST = "MUST"
SHOULD = "SHOULD"


@dataclass(frozen=True)
class Requirement:
    id: str
    level: str
    title: str

    @property
    def area(self) -> str:
        return self.id.split("-", 1)[0]


AREAS = {
    "MSG": "Messages",
    "NAME": "Names",
    "CHAN": "Channels",
    "CAP": "Capacity",
    "EXP": "Expiry",
    "GRP": "Groups",
    "FLUSH": "Flush",
    "EXT": "Extensions",
    "ASYNC": "Async API",
    "LOOP": "Event loops",
    "XP": "Cross-process",
    "MODEL": "Model-based",
    "FAULT": "Faults",
}

_TABLE = [
    ("MSG-1", MUST, "a non-dict message is refused at send and nothing is sent"),
    ("MSG-2", MUST, "allowed value types round-trip (bytes, str, int64, float, list, dict, bool, None)"),
    ("MSG-3", SHOULD, "a value the wire cannot carry is refused at send with a clear error"),
    ("MSG-4", MUST, "a 1 MB message is delivered intact"),
    ("MSG-5", SHOULD, "over the documented size limit, send raises MessageTooLarge and delivers nothing"),
    ("MSG-6", MUST, "the receiver gets an equal, independent copy of the message"),
    ("NAME-1", MUST, "valid channel names (letters, digits, - _ . and one !, 1-99 chars) are accepted"),
    ("NAME-2", MUST, "an invalid channel or group name raises TypeError in every method"),
    ("NAME-3", MUST, "group names use the same characters, without !"),
    ("NAME-4", MUST, "new_channel() returns unique process-specific names and honours the prefix"),
    ("CHAN-1", MUST, "FIFO: one writer, one reader, messages arrive in send order"),
    ("CHAN-2", MUST, "at-most-once: no message is delivered twice, nor to two receivers"),
    ("CHAN-3", MUST, "send never blocks waiting for a receiver"),
    ("CHAN-4", MUST, "receive waits as long as needed, also after 6+ s idle"),
    ("CHAN-5", MUST, "cancelling a waiting receive leaves the layer live"),
    ("CHAN-6", MUST, "process-specific channels of one process are delivered apart, each in order"),
    ("CHAN-7", MUST, "a normal channel delivers every message to exactly one of its receivers"),
    ("CHAN-8", SHOULD, "a cancelled receive loses no message"),
    ("CHAN-9", SHOULD, "a flood on one channel does not starve a quiet sibling"),
    ("CAP-1", MUST, "with capacity N, N sends succeed and the next raises ChannelFull"),
    ("CAP-2", MUST, "a receive frees room for the next send"),
    ("CAP-3", SHOULD, "channel_capacity patterns override the default, first match wins"),
    ("CAP-4", MUST, "process-specific channels share the capacity of their non-local part"),
    ("CAP-5", MUST, "group_send never raises ChannelFull; a full member misses the message"),
    ("EXP-1", SHOULD, "a message unread for expiry seconds is not delivered (per message)"),
    ("EXP-2", SHOULD, "expired messages free capacity"),
    ("EXP-3", MUST, "group membership ends after group_expiry; re-adding renews it"),
    ("GRP-1", MUST, "group_send delivers one copy to each member; group_add is idempotent"),
    ("GRP-2", MUST, "group_discard removes a member; discarding a non-member is a no-op"),
    ("GRP-3", MUST, "group_send to an empty or unknown group does nothing and raises nothing"),
    ("GRP-4", MUST, "a channel in several groups gets one copy per group_send to each"),
    ("GRP-5", SHOULD, "group_send of an oversize message raises MessageTooLarge"),
    ("FLUSH-1", MUST, "flush empties every channel and group; blocked receives stay live"),
    ("EXT-1", MUST, "extensions is a list of str and each listed extension works"),
    ("ASYNC-1", MUST, "the API is coroutines and works from sync code via async_to_sync"),
    ("LOOP-1", SHOULD, "one instance works from two event loops in turn; close() releases resources"),
    ("XP-1", MUST, "process B sends to A's new_channel; A receives it"),
    ("XP-2", MUST, "A joins a group, B group_sends; A receives"),
    ("XP-3", MUST, "many senders, one receiver on a normal channel: nothing lost or doubled, order per sender"),
    ("XP-4", MUST, "a flush in one process is seen by every other"),
    ("XP-5", SHOULD, "a process killed mid-traffic leaves the layer usable by the others"),
    ("MODEL-1", MUST, "random operation sequences match the executable model"),
    ("FAULT-1", MUST, "server unreachable from the start: send, receive, group_send fail naming the address"),
    ("FAULT-2", MUST, "after a server restart the same layer serves sends and receives within 10 s"),
    ("FAULT-3", MUST, "a receive waiting through a server restart ends: a later message or an error"),
    ("FAULT-4", SHOULD, "server paused 3 s mid-traffic: calls complete; nothing lost, doubled or reordered"),
    ("FAULT-5", SHOULD, "connections dropped, state kept: recovered transparently; nothing lost or doubled"),
    ("FAULT-6", SHOULD, "group memberships made before a restart still reach their members after it"),
    ("FAULT-7", SHOULD, "failover of a replicated server: sends and receives resume within 15 s"),
    ("FAULT-8", MUST, "a peer sends through a restart: per-sender order kept, nothing delivered twice"),
]

REQUIREMENTS: dict[str, Requirement] = {rid: Requirement(rid, level, title) for rid, level, title in _TABLE}


def get(requirement_id: str) -> Requirement:
    """The requirement with that id; a KeyError names the unknown id."""
    try:
        return REQUIREMENTS[requirement_id]
    except KeyError:
        raise KeyError(f"unknown requirement id {requirement_id!r}") from None
