"""MSG-*: broken message checks, encodings and copies.

Each class is the in-memory reference layer with one plausible bug.
"""

from __future__ import annotations

import pickle

from reference_layers.base import check_message
from reference_layers.inmemory import (  # noqa: F401 - the suite looks its exceptions up in the layer's module
    ChannelFull,
    InMemoryChannelLayer,
    MessageTooLarge,
)
from tests.mutants.registry import breaks


@breaks("MSG-1")
class TurnsPairListsIntoDicts(InMemoryChannelLayer):
    """Breaks MSG-1: a list of (key, value) pairs is quietly sent as a dict."""

    async def send(self, channel, message):
        if isinstance(message, list):
            message = dict(message)
        await super().send(channel, message)


@breaks("MSG-1")
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


@breaks("MSG-2")
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


@breaks("MSG-3")
class PicklesAnything(InMemoryChannelLayer):
    """Breaks MSG-3: any picklable value (set, datetime, huge int) is accepted, so code that
    works here fails later on a network layer."""

    def __init__(self, **config):
        super().__init__(**config)
        self.codec = _PickleCodec()


@breaks("MSG-4")
class RefusesOneMegabyte(InMemoryChannelLayer):
    """Breaks MSG-4: a 512 KiB size limit refuses the 1 MB messages every layer must carry."""

    def __init__(self, **config):
        config["message_size_limit"] = 512 * 1024
        super().__init__(**config)


@breaks("MSG-5")
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


@breaks("MSG-6")
class SharesMessageObjects(InMemoryChannelLayer):
    """Breaks MSG-6: queues the sender's dict itself, so sender and receivers share one object."""

    def __init__(self, **config):
        super().__init__(**config)
        self.codec = _SharingCodec()
