"""How the test process and a peer talk: requests and replies, pickled and framed on a pipe.

Each frame is a magic, a length and a pickle, so stray bytes on the pipe (a layer that
writes to the wrong file descriptor) are caught as a garbled frame, never obeyed. Both sides
import this module, so the frame classes unpickle to the same types on either end.
"""

from __future__ import annotations

import pickle
import struct
import traceback
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

_HEADER = struct.Struct(">2sI")  # magic, length
_MAGIC = b"\xacP"

Frame = TypeVar("Frame")


@dataclass(frozen=True)
class Request:
    """One command for the peer: ``command`` names a ``cmd_*`` method, ``args`` its keywords."""

    request_id: int
    command: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoteError:
    """An exception raised in the peer, as text: its class may not exist in the test process."""

    type_name: str  # module.qualname
    class_names: list[str]  # the class and its bases, by name: what a test can match on
    message: str
    traceback: str

    @classmethod
    def of(cls, error: BaseException) -> RemoteError:
        return cls(type_name=f"{type(error).__module__}.{type(error).__qualname__}",
                   class_names=[kind.__name__ for kind in type(error).__mro__], message=str(error),
                   traceback="".join(traceback.format_exception(error)))


@dataclass(frozen=True)
class Reply:
    """The answer to request ``request_id``: its result, or the error it raised."""

    request_id: int
    result: Any = None
    error: RemoteError | None = None


def write_frame(stream: IO[bytes], obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(_MAGIC, len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes], kind: type[Frame]) -> Frame | None:
    """The next ``kind`` object, or None at end of file (the other side closed or died)."""
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    magic, size = _HEADER.unpack(header)
    if magic != _MAGIC:
        raise ValueError(f"garbled frame: the pipe carried {header!r}, not a frame header")
    body = _read_exactly(stream, size)
    if body is None:
        return None
    frame = pickle.loads(body)
    if not isinstance(frame, kind):
        raise ValueError(f"garbled frame: expected a {kind.__name__}, got a {type(frame).__name__}")
    return frame


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    chunks, missing = [], size
    while missing:
        chunk = stream.read(missing)
        if not chunk:
            return None
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)
