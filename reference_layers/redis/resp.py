"""A pure-Python RESP2 reply reader with hiredis.Reader's interface, used when hiredis is absent."""

from __future__ import annotations

from redis.exceptions import ResponseError

_INCOMPLETE = object()


class ReplyReader:
    """``feed(bytes)``, then ``gets()`` returns one reply, or False until a whole one arrived."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def gets(self):
        reply, end = self._parse(0)
        if reply is _INCOMPLETE:
            return False
        del self._buffer[:end]
        return reply

    def _parse(self, start: int):
        buffer = self._buffer
        line_end = buffer.find(b"\r\n", start)
        if line_end < 0:
            return _INCOMPLETE, start
        kind, line, after = buffer[start:start + 1], bytes(buffer[start + 1:line_end]), line_end + 2
        if kind == b"+":
            return line, after
        if kind == b"-":
            return ResponseError(line.decode(errors="replace")), after
        if kind == b":":
            return int(line), after
        if kind == b"$":
            size = int(line)
            if size < 0:
                return None, after
            if len(buffer) < after + size + 2:
                return _INCOMPLETE, start
            return bytes(buffer[after:after + size]), after + size + 2
        if kind == b"*":
            count = int(line)
            if count < 0:
                return None, after
            items = []
            for _ in range(count):
                item, after = self._parse(after)
                if item is _INCOMPLETE:
                    return _INCOMPLETE, start
                items.append(item)
            return items, after
        raise ValueError(f"not a RESP2 reply: {bytes(buffer[start:line_end])!r}")
