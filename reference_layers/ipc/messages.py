"""Messages as chains of chunks in the segment: taking chunks, copying a message in and out,
freeing it; every change to shared links through a :class:`~.journal.Transaction`.

A message's first chunk carries its header (next message in the queue, length, last chunk,
expiry stamp); the chunks are linked through ``C_NEXT``. Apart from ``store.py`` so the
channel and group structures read without the byte handling. ``hotpath.py`` does the
one-chunk case without a Transaction.
"""

from __future__ import annotations

from . import layout as L
from .journal import F64, U32, Transaction
from .segment import SegmentFull


def chunks_for(length: int) -> int:
    if length <= L.FIRST_ROOM:
        return 1
    return 1 + -(-(length - L.FIRST_ROOM) // L.MORE_ROOM)


def alloc_chunks(tx: Transaction, layout: L.Layout, count: int, segment_name: str) -> tuple[list[int], int]:
    """``count`` chunks linked as one chain; also how many came from the free list."""
    assert not tx.freed, "a transaction must not reuse chunks it freed (they are copied into directly)"
    chunk = layout.chunk
    taken: list[int] = []
    index = tx.u32(L.H_CHUNK_FREE)
    while index and len(taken) < count:
        taken.append(index)
        index = tx.u32(chunk(index) + L.C_NEXT)
    from_free = len(taken)
    need = count - from_free
    if need:
        bump = tx.u32(L.H_CHUNK_BUMP)
        if bump + need - 1 > layout.n_chunks:
            raise SegmentFull(
                f"shared segment {segment_name} is full: no room for a message of "
                f"{count} chunks ({layout.size} bytes segment); receive faster or raise segment_size")
        taken.extend(range(bump, bump + need))
        tx.set_u32(L.H_CHUNK_BUMP, bump + need)
    if from_free:
        tx.set_u32(L.H_CHUNK_FREE, index)
        # chunks popped in a row from the free list are already linked; fix the seam
        tx.set_u32(chunk(taken[from_free - 1]) + L.C_NEXT, taken[from_free] if need else L.NIL)
    mem = tx.mem
    for position in range(from_free, count):  # fresh chunks: nothing points at them yet
        U32.pack_into(mem, chunk(taken[position]) + L.C_NEXT,
                      taken[position + 1] if position + 1 < count else L.NIL)
    tx.set_u32(L.H_CHUNKS_USED, tx.u32(L.H_CHUNKS_USED) + count)
    return taken, from_free


def write_message(tx: Transaction, layout: L.Layout, chunks: list[int], data: bytes, expires: float) -> int:
    """Copy ``data`` into the (unreferenced) chunks and fill the message header."""
    mem, chunk = tx.mem, layout.chunk
    first = chunk(chunks[0])
    piece = data[:L.FIRST_ROOM]
    mem[first + L.FIRST_DATA:first + L.FIRST_DATA + len(piece)] = piece
    pos = L.FIRST_ROOM
    for index in chunks[1:]:
        off = chunk(index)
        piece = data[pos:pos + L.MORE_ROOM]
        mem[off + L.MORE_DATA:off + L.MORE_DATA + len(piece)] = piece
        pos += L.MORE_ROOM
    # bytes 4.. of a free chunk belong to nobody, so the header is written directly too
    U32.pack_into(mem, first + L.M_NEXT, L.NIL)
    U32.pack_into(mem, first + L.M_LENGTH, len(data))
    U32.pack_into(mem, first + L.M_LAST, chunks[-1])
    F64.pack_into(mem, first + L.M_EXPIRES, expires)
    return chunks[0]


def read_message(tx: Transaction, layout: L.Layout, first: int) -> bytes:
    mem, chunk = tx.mem, layout.chunk
    off = chunk(first)
    length = U32.unpack_from(mem, off + L.M_LENGTH)[0]
    start = off + L.FIRST_DATA
    if length <= L.FIRST_ROOM:
        return mem[start:start + length]
    parts = [mem[start:start + L.FIRST_ROOM]]
    remaining = length - L.FIRST_ROOM
    index = tx.u32(off + L.C_NEXT)
    while remaining > 0:
        off = chunk(index)
        take = min(remaining, L.MORE_ROOM)
        parts.append(mem[off + L.MORE_DATA:off + L.MORE_DATA + take])
        remaining -= take
        index = tx.u32(off + L.C_NEXT)
    return b"".join(parts)


def free_message(tx: Transaction, layout: L.Layout, first: int) -> None:
    mem, chunk = tx.mem, layout.chunk
    off = chunk(first)
    last = U32.unpack_from(mem, off + L.M_LAST)[0]
    count = chunks_for(U32.unpack_from(mem, off + L.M_LENGTH)[0])
    tx.set_u32(chunk(last) + L.C_NEXT, tx.u32(L.H_CHUNK_FREE))
    tx.set_u32(L.H_CHUNK_FREE, first)
    tx.set_u32(L.H_CHUNKS_USED, tx.u32(L.H_CHUNKS_USED) - count)
    tx.freed = True
