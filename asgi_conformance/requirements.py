"""The channel layer specification as data: one entry per requirement id.

The suite tags every test with one of these ids and the report prints this table, so a
failing line points at the sentence of the spec it checks. MUST rules fail a run; SHOULD
rules are reported as deviations unless ``--asgi-strict`` turns them into failures.
"""

from __future__ import annotations

from dataclasses import dataclass

MUST = "MUST"
SHOULD = "SHOULD"


# The catalogue's own version: it changes when an id is added, or a level or title changes,
# so a report says which catalogue it judged by. CHANGELOG.md records each change.
CATALOGUE_VERSION = "0.2.0"


@dataclass(frozen=True)
class Requirement:
    id: str
    level: str
    title: str
    since: str  # the catalogue version that added this id

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

# id, level, title, since
_TABLE = [
    ("MSG-1", MUST, "a non-dict message is refused at send and nothing is sent", "0.1.0"),
    ("MSG-2", MUST, "allowed value types round-trip (bytes, str, int64, float, list, dict, bool, None)", "0.1.0"),
    ("MSG-3", SHOULD, "a value the wire cannot carry is refused at send with a clear error", "0.1.0"),
    ("MSG-4", MUST, "a 1 MB message is delivered intact", "0.1.0"),
    ("MSG-5", SHOULD, "over the documented size limit, send raises MessageTooLarge and delivers nothing", "0.1.0"),
    ("MSG-6", MUST, "the receiver gets an equal, independent copy of the message", "0.1.0"),
    ("NAME-1", MUST, "valid channel names (letters, digits, - _ . and one !, 1-99 chars) are accepted", "0.1.0"),
    ("NAME-2", MUST, "an invalid channel or group name raises TypeError in every method", "0.1.0"),
    ("NAME-3", MUST, "group names use the same characters, without !", "0.1.0"),
    ("NAME-4", MUST, "new_channel() returns unique process-specific names and honours the prefix", "0.1.0"),
    ("CHAN-1", MUST, "FIFO: one writer, one reader, messages arrive in send order", "0.1.0"),
    ("CHAN-2", MUST, "at-most-once: no message is delivered twice, nor to two receivers", "0.1.0"),
    ("CHAN-3", MUST, "send never blocks waiting for a receiver", "0.1.0"),
    ("CHAN-4", MUST, "receive waits as long as needed, also after 6+ s idle", "0.1.0"),
    ("CHAN-5", MUST, "cancelling a waiting receive leaves the layer live", "0.1.0"),
    ("CHAN-6", MUST, "process-specific channels of one process are delivered apart, each in order", "0.1.0"),
    ("CHAN-7", MUST, "a normal channel delivers every message to exactly one of its receivers", "0.1.0"),
    ("CHAN-8", SHOULD, "a cancelled receive loses no message", "0.1.0"),
    ("CHAN-9", SHOULD, "a flood on one channel does not starve a quiet sibling", "0.1.0"),
    ("CAP-1", MUST, "with capacity N, N sends succeed and the next raises ChannelFull", "0.1.0"),
    ("CAP-2", MUST, "a receive frees room for the next send", "0.1.0"),
    ("CAP-3", SHOULD, "channel_capacity patterns override the default, first match wins", "0.1.0"),
    ("CAP-4", MUST, "process-specific channels share the capacity of their non-local part", "0.1.0"),
    ("CAP-5", MUST, "group_send never raises ChannelFull; a full member misses the message", "0.1.0"),
    ("EXP-1", SHOULD, "a message unread for expiry seconds is not delivered (per message)", "0.1.0"),
    ("EXP-2", SHOULD, "expired messages free capacity", "0.1.0"),
    ("EXP-3", MUST, "group membership ends after group_expiry; re-adding renews it", "0.1.0"),
    ("GRP-1", MUST, "group_send delivers one copy to each member; group_add is idempotent", "0.1.0"),
    ("GRP-2", MUST, "group_discard removes a member; discarding a non-member is a no-op", "0.1.0"),
    ("GRP-3", MUST, "group_send to an empty or unknown group does nothing and raises nothing", "0.1.0"),
    ("GRP-4", MUST, "a channel in several groups gets one copy per group_send to each", "0.1.0"),
    ("GRP-5", SHOULD, "group_send of an oversize message raises MessageTooLarge", "0.1.0"),
    ("FLUSH-1", MUST, "flush empties every channel and group; blocked receives stay live", "0.1.0"),
    ("EXT-1", MUST, "extensions is a list of str and each listed extension works", "0.1.0"),
    ("ASYNC-1", MUST, "the API is coroutines and works from sync code via async_to_sync", "0.1.0"),
    ("LOOP-1", SHOULD, "one instance works from two event loops in turn; close() releases resources", "0.1.0"),
    ("XP-1", MUST, "process B sends to A's new_channel; A receives it", "0.1.0"),
    ("XP-2", MUST, "A joins a group, B group_sends; A receives", "0.1.0"),
    ("XP-3", MUST, "many senders, one receiver on a normal channel: nothing lost or doubled, order per sender", "0.1.0"),
    ("XP-4", MUST, "a flush in one process is seen by every other", "0.1.0"),
    ("XP-5", SHOULD, "a process killed mid-traffic leaves the layer usable by the others", "0.1.0"),
    ("MODEL-1", MUST, "random operation sequences match the executable model", "0.1.0"),
    ("FAULT-1", MUST, "server unreachable from the start: send, receive, group_send fail naming the address", "0.2.0"),
    ("FAULT-2", MUST, "after a server restart the same layer serves sends and receives within 10 s", "0.2.0"),
    ("FAULT-3", MUST, "a receive waiting through a server restart ends: a later message or an error", "0.2.0"),
    ("FAULT-4", SHOULD, "server paused 3 s mid-traffic: calls complete; nothing lost, doubled or reordered", "0.2.0"),
    ("FAULT-5", SHOULD, "connections dropped, state kept: recovered transparently; nothing lost or doubled", "0.2.0"),
    ("FAULT-6", SHOULD, "group memberships made before a restart still reach their members after it", "0.2.0"),
    ("FAULT-7", SHOULD, "failover of a replicated server: sends and receives resume within 15 s", "0.2.0"),
    ("FAULT-8", MUST, "a peer sends through a restart: per-sender order kept, nothing delivered twice", "0.2.0"),
]

REQUIREMENTS: dict[str, Requirement] = {row[0]: Requirement(*row) for row in _TABLE}


def get(requirement_id: str) -> Requirement:
    """The requirement with that id; a KeyError names the unknown id."""
    try:
        return REQUIREMENTS[requirement_id]
    except KeyError:
        raise KeyError(f"unknown requirement id {requirement_id!r}") from None


def version_key(version: str) -> tuple[int, ...]:
    """``"0.10.0"`` sorts after ``"0.9.0"``: versions compare as numbers, not text."""
    return tuple(int(part) for part in version.split("."))


def added_in(version: str) -> list[Requirement]:
    """The requirements a catalogue version added (what CHANGELOG.md lists under it)."""
    return [req for req in REQUIREMENTS.values() if req.since == version]
