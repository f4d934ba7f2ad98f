"""Message dict <-> bytes on the wire: what a message may hold, msgpack, encryption, size limit.

Every layer encodes every message, the in-memory one too, so a message the wire cannot carry
fails at the first send on any layer, not later on Redis.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgpack  # type: ignore[import-untyped]  # msgpack ships no type information

from .errors import LayerConfigError, MessageTooLarge, UnserialisableMessage

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

INT64_MIN, INT64_MAX = -(2**63), 2**64 - 1  # msgpack carries int64 and uint64
MAX_NESTING = 100
DEFAULT_MESSAGE_SIZE_LIMIT = 8 * 1024 * 1024
_SCALARS = (str, bytes, bool, float, type(None))
_PLAIN = frozenset((str, bytes, bool, float, type(None)))
_IMMUTABLE = frozenset((str, bytes, bool, float, int, type(None)))
_NOT_FLAT: dict[str, Any] = {}  # in the memo: a message that must be decoded each time


def check_message(message: Any) -> bool:
    """Raise TypeError unless ``message`` is a dict the wire can carry exactly.

    Returns True if it is a flat ``dict`` (not a subclass) of plain values: packing such a
    message runs no Python code, which ``MessageCodec`` relies on to share one packer.
    """
    if not isinstance(message, dict):
        raise TypeError(f"message must be a dict, not {type(message).__name__}: {message!r:.80}")
    for key, value in message.items():  # fast path, no recursion: a flat dict of plain values
        if type(key) is not str or (type(value) not in _PLAIN and not (
                type(value) is int and INT64_MIN <= value <= INT64_MAX)):
            break
    else:
        return type(message) is dict
    _check_value(message, "message", 0)
    return False


def _check_value(value: Any, path: str, depth: int) -> None:
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise UnserialisableMessage(f"{path} = {value} does not fit in 64 bits")
        return
    if depth >= MAX_NESTING:
        raise UnserialisableMessage(f"{path} is nested more than {MAX_NESTING} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnserialisableMessage(f"{path} has a key of type {type(key).__name__} ({key!r}); keys must be str")
            _check_value(item, f"{path}[{key!r}]", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_value(item, f"{path}[{index}]", depth + 1)
        return
    if isinstance(value, bytearray):
        return
    raise UnserialisableMessage(
        f"{path} is a {type(value).__name__} ({value!r:.60}); a channel message may hold only "
        "dict, list, tuple, str, bytes, int, float, bool and None")


_GIL = getattr(sys, "_is_gil_enabled", lambda: True)()  # False on a free-threaded build


class MessageCodec:
    """Message dict <-> bytes on the wire: checks, msgpack, optional encryption, size limit."""

    def __init__(self, size_limit: int | None = DEFAULT_MESSAGE_SIZE_LIMIT,
                 encryption_keys: Iterable[str | bytes] | None = None) -> None:
        self.size_limit = size_limit
        self._crypter = _make_crypter(encryption_keys) if encryption_keys else None
        # msgpack.packb builds a Packer per call (most of its cost for a small message). One
        # kept Packer is shared by every thread, but only for flat plain dicts: packing those
        # runs no Python code, so under the GIL no other thread can enter it halfway.
        self._pack: Callable[[dict[str, Any]], bytes] | None = (
            msgpack.Packer(use_bin_type=True).pack if _GIL else None)
        # decode's last message: its bytes, and a flat copy of it once it came twice (None
        # while it came once, _NOT_FLAT if it holds a list or dict). One tuple, replaced whole,
        # so a thread sees a consistent pair.
        self._last: tuple[bytes, dict[str, Any] | None] = (b"", _NOT_FLAT)

    def encode(self, message: dict[str, Any]) -> bytes:
        if check_message(message) and self._pack is not None:
            data = self._pack(message)
        else:
            data = msgpack.packb(message, use_bin_type=True)
        if self.size_limit is not None and len(data) > self.size_limit:
            raise MessageTooLarge(
                f"message is {len(data)} bytes encoded, over the layer's limit of {self.size_limit} bytes")
        if self._crypter is not None:
            data = self._crypter.encrypt(data)
        return data

    def decode(self, data: bytes) -> dict[str, Any]:
        """The message ``data`` carries, a dict of the caller's own.

        A group send's copies come to one process's members one after another, the same bytes
        each time: a flat message (immutable values only) is unpacked once, and each copy
        after it is a copy of that dict, as if unpacked again. A nested list or dict is never
        shared: such a message is unpacked every time."""
        last = self._last
        if last[0] != data:
            self._last = (data, None)
            return self._unpack(data)
        flat = last[1]
        if flat is None:
            message = self._unpack(data)
            kept = message.copy() if _IMMUTABLE.issuperset(map(type, message.values())) else _NOT_FLAT
            self._last = (data, kept)
            return message
        if flat is _NOT_FLAT:
            return self._unpack(data)
        return flat.copy()

    def _unpack(self, data: bytes) -> dict[str, Any]:
        if self._crypter is not None:
            data = self._crypter.decrypt(data)
        # Returned as unpacked (no local to type it): this runs on every receive.
        return msgpack.unpackb(data, raw=False)  # type: ignore[no-any-return]  # encode wrote a dict


def _make_crypter(keys: Iterable[str | bytes]) -> MultiFernet:
    """A MultiFernet: the first key encrypts, every key decrypts (so keys can be rotated)."""
    if isinstance(keys, (str, bytes)):
        raise LayerConfigError("symmetric_encryption_keys must be a list of keys, not a single key")
    try:
        from cryptography.fernet import Fernet, MultiFernet
    except ImportError:  # pragma: no cover
        raise LayerConfigError("symmetric_encryption_keys needs the 'cryptography' package") from None
    import base64
    import hashlib

    fernets = []
    for key in keys:
        raw = key.encode() if isinstance(key, str) else bytes(key)
        # Any secret string works as a key: derive the 32 bytes Fernet wants from it.
        fernets.append(Fernet(base64.urlsafe_b64encode(hashlib.sha256(raw).digest())))
    if not fernets:
        raise LayerConfigError("symmetric_encryption_keys is empty")
    return MultiFernet(fernets)
