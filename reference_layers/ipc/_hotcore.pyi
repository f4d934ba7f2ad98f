# The C hot path's interface (``_hotcore.c``), for mypy: what ``native.py`` and ``hotpath.py`` call.
# The answers are the three ``native.Answer`` objects handed to Core() (it returns them by identity).
from collections.abc import Sequence
from typing import Literal

from .native import Answer

Pokes = Sequence[tuple[int, int, int]]  # (waker slot, waker token, armed epoch) of each waiter to poke

LAYOUT: dict[str, int]

class Core:
    def __init__(self, mem: object, not_handled: Answer, busy: Answer, held: Answer, robust: bool, entries: int,
                 chunks: int, journal: int, wakers: int, n_chunks: int, n_entries: int,
                 pause_at: str | None = ..., /) -> None: ...
    def send(self, off: int, data: bytes, expires: float, capacity: int, label: str, /
             ) -> Pokes | Literal[Answer.NOT_HANDLED]: ...
    def send_named(self, name: bytes, bucket: int, counter_length: int, counter_bucket: int, data: bytes,
                   expires: float, capacity: int, label: str, /) -> Pokes | Literal[Answer.NOT_HANDLED]: ...
    def pop(self, off: int, bucket: int, counter_bucket: int, now: float, slot: int, token: int, disarm: bool,
            epoch: int | None, /) -> bytes | None | Literal[Answer.NOT_HANDLED]: ...
    def locked_send(self, off: int, kind_word: int, name: bytes, generation: int, bucket: int, counter_length: int,
                    counter_bucket: int, data: bytes, expires: float, capacity: int, label: str, /
                    ) -> Pokes | Literal[Answer.BUSY, Answer.HELD]: ...
    def locked_pop(self, off: int, kind_word: int, name: bytes, generation: int, bucket: int, counter_bucket: int,
                   now: float, slot: int, token: int, disarm: bool, epoch: int | None, /
                   ) -> bytes | None | Literal[Answer.BUSY, Answer.HELD]: ...
    def live_members(self, group_off: int, now: float, /) -> dict[bytes, list[bytes]] | None: ...
    def armed_siblings(self, counter_off: int, /) -> list[tuple[bytes, list[tuple[int, int, int]]]]: ...
    def release(self) -> None: ...
