"""Broken channel layers for the MSG, NAME, CAP and EXP areas: each breaks one rule.

Every class is the reference InMemoryChannelLayer with one plausible bug. The suite's tests
for the broken rule must FAIL against it (tests/test_mutants_part1.py checks that), which
proves those tests can fail at all and catch that kind of bug.
"""

from __future__ import annotations

import math
import pickle
import random
import string
import time
from collections import Counter

from reference_layers.base import (
    CapacityRules,
    ChannelFull,
    MessageTooLarge,  # noqa: F401 - the suite looks for it in this module (MSG-5)
    check_channel_name,
    check_message,
    non_local_name,
)
from reference_layers.inmemory import InMemoryChannelLayer

# --- MSG ---------------------------------------------------------------------------------------

class TurnsPairListsIntoDicts(InMemoryChannelLayer):
    """Breaks MSG-1: a list of (key, value) pairs is quietly sent as a dict."""

    async def send(self, channel, message):
        if isinstance(message, list):
            message = dict(message)
        await super().send(channel, message)


class OnlyAssertsMessageIsDict(InMemoryChannelLayer):
    """Breaks MSG-1 in strict mode: the only check is an assert, which python -O removes."""

    async def send(self, channel, message):
        assert isinstance(message, dict), "message is not a dict"
        await super().send(channel, message)


def _bytes_to_text(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return {key: _bytes_to_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_bytes_to_text(item) for item in value]
    return value


class BytesArriveAsText(InMemoryChannelLayer):
    """Breaks MSG-2: bytes come back as str, as from a layer that encodes messages as JSON."""

    async def receive(self, channel):
        return _bytes_to_text(await super().receive(channel))


class _PickleCodec:
    def encode(self, message):
        if not isinstance(message, dict):
            raise TypeError("message must be a dict")
        return pickle.dumps(message)

    def decode(self, data):
        return pickle.loads(data)


class PicklesAnything(InMemoryChannelLayer):
    """Breaks MSG-3: any picklable value (set, datetime, huge int) is accepted, so code that
    works here fails later on a network layer."""

    def __init__(self, **config):
        super().__init__(**config)
        self.codec = _PickleCodec()


class RefusesOneMegabyte(InMemoryChannelLayer):
    """Breaks MSG-4: a 512 KiB size limit refuses the 1 MB messages every layer must carry."""

    def __init__(self, **config):
        config["message_size_limit"] = 512 * 1024
        super().__init__(**config)


class DeclaredLimitNotEnforced(InMemoryChannelLayer):
    """Breaks MSG-5: declares a 64 KiB message_size_limit but delivers larger messages."""

    def __init__(self, **config):
        config["message_size_limit"] = 64 * 1024
        super().__init__(**config)
        self.codec.size_limit = None


class _SharingCodec:
    def encode(self, message):
        check_message(message)
        return message

    def decode(self, data):
        return data


class SharesMessageObjects(InMemoryChannelLayer):
    """Breaks MSG-6: queues the sender's dict itself, so sender and receivers share one object."""

    def __init__(self, **config):
        super().__init__(**config)
        self.codec = _SharingCodec()


# --- NAME --------------------------------------------------------------------------------------

def _check_shorter_than_99(channel):
    if isinstance(channel, str) and len(channel) >= 99:
        raise TypeError(f"channel name too long: {len(channel)} characters")


class RefusesLongestNames(InMemoryChannelLayer):
    """Breaks NAME-1: an off-by-one length check refuses valid 99-character names."""

    async def send(self, channel, message):
        _check_shorter_than_99(channel)
        await super().send(channel, message)

    async def receive(self, channel):
        _check_shorter_than_99(channel)
        return await super().receive(channel)


class ReceiveSkipsNameCheck(InMemoryChannelLayer):
    """Breaks NAME-2: receive does not check the name, so it waits forever on an invalid one."""

    async def receive(self, channel):
        return self.codec.decode(await self._receive(channel))


class AllowsBangInGroupNames(InMemoryChannelLayer):
    """Breaks NAME-3: group names are checked with the channel rule, which allows one '!'."""

    async def group_add(self, group, channel):
        check_channel_name(group)
        check_channel_name(channel)
        await self._group_add(group, channel)

    async def group_discard(self, group, channel):
        check_channel_name(group)
        check_channel_name(channel)
        await self._group_discard(group, channel)

    async def group_send(self, group, message):
        check_channel_name(group)
        await self._group_send(group, self.codec.encode(message))


class SeededChannelNames(InMemoryChannelLayer):
    """Breaks NAME-4: new_channel() draws from the random module, so random.seed() repeats names."""

    async def new_channel(self, prefix="specific"):
        return f"{prefix}.inmemory!" + "".join(random.choice(string.ascii_letters) for _ in range(12))


# --- CAP ---------------------------------------------------------------------------------------

class NoCapacity(InMemoryChannelLayer):
    """Breaks CAP-1: never raises ChannelFull."""

    def __init__(self, **config):
        config["capacity"] = 1_000_000
        super().__init__(**config)


class ReceiveKeepsRoomTaken(InMemoryChannelLayer):
    """Breaks CAP-2: counts every message ever sent against capacity, so a receive frees nothing."""

    def __init__(self, **config):
        super().__init__(**config)
        self._ever_sent = Counter()

    def _put(self, channel, data, now):
        if self._ever_sent[channel] >= self.capacities.for_channel(channel):
            raise ChannelFull(f"channel {channel!r} is full")
        super()._put(channel, data, now)
        self._ever_sent[channel] += 1


class IgnoresChannelCapacity(InMemoryChannelLayer):
    """Breaks CAP-3: channel_capacity patterns are accepted and ignored."""

    def __init__(self, channel_capacity=None, **config):
        super().__init__(**config)


class _CountsSentMinusReceived(InMemoryChannelLayer):
    """Capacity kept by this class, outside the layer's own accounting: messages sent to a
    key and not yet received from it; expired messages are never subtracted."""

    def __init__(self, **config):
        super().__init__(**config)
        self._own_capacities = self.capacities
        self.capacities = CapacityRules(1_000_000)  # the layer's own check never trips
        self._queued = Counter()

    def _capacity_key(self, channel):
        raise NotImplementedError

    async def send(self, channel, message):
        key = self._capacity_key(channel)
        if self._queued[key] >= self._own_capacities.for_channel(channel):
            raise ChannelFull(f"channel {channel!r} is full")
        await super().send(channel, message)
        self._queued[key] += 1

    async def receive(self, channel):
        message = await super().receive(channel)
        self._queued[self._capacity_key(channel)] -= 1
        return message


class CapacityPerFullChannelName(_CountsSentMinusReceived):
    """Breaks CAP-4: p!a and p!b each get the full capacity instead of sharing p!'s."""

    def _capacity_key(self, channel):
        return channel


class GroupSendRaisesChannelFull(InMemoryChannelLayer):
    """Breaks CAP-5: group_send lets a full member's ChannelFull escape."""

    async def _group_send(self, group, data):
        now = time.monotonic()
        with self._lock:
            members = list(self._groups.get(group, {}))
            for channel in members:
                self._put(channel, data, now)
        for channel in members:
            self._wake_one(channel)


# --- EXP ---------------------------------------------------------------------------------------

class IgnoresExpiry(InMemoryChannelLayer):
    """Breaks EXP-1 (and EXP-2): messages never expire."""

    def __init__(self, **config):
        super().__init__(**config)
        self.expiry = 1_000_000_000


class ExpiresWholeChannel(InMemoryChannelLayer):
    """Breaks EXP-1: expiry per channel, not per message: a message queued behind others
    expires with the oldest of them."""

    def _put(self, channel, data, now):
        super()._put(channel, data, now)
        queue = self._queues[channel]
        if len(queue) > 1:
            queue[-1] = (queue[0][0], queue[-1][1])


class ExpiredMessagesKeepTheirRoom(_CountsSentMinusReceived):
    """Breaks EXP-2: expired messages are never delivered but still count against capacity."""

    def _capacity_key(self, channel):
        return non_local_name(channel)


class GroupsNeverExpire(InMemoryChannelLayer):
    """Breaks EXP-3: group membership lasts forever, whatever group_expiry says."""

    async def _group_add(self, group, channel):
        with self._lock:
            self._groups.setdefault(group, {})[channel] = math.inf


class ReAddDoesNotRenewMembership(InMemoryChannelLayer):
    """Breaks EXP-3: group_add of a member keeps its first expiry time."""

    async def _group_add(self, group, channel):
        with self._lock:
            self._groups.setdefault(group, {}).setdefault(channel, time.monotonic() + self.group_expiry)
