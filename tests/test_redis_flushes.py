"""A flush's wait for the answers of the loops that heard it (flushes.py), with no server.

The ring and the answers travel on the subscription's connection, the flush script's reply on
another, behind whatever was queued there: an answer may be read before that reply.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from reference_layers.redis import flushes
from reference_layers.redis.flushes import ACK_TIMEOUT, FlushWatch


class Board:
    """A bell board that only records who listens (flushes.BellBoard)."""

    def __init__(self) -> None:
        self.listeners: dict[bytes, list] = {}

    def listen(self, bell: bytes, listener) -> None:
        self.listeners.setdefault(bell, []).append(listener)

    def forget(self, bell: bytes, listener) -> None:
        self.listeners[bell].remove(listener)

    async def subscribe(self, bell: bytes) -> None:
        pass

    async def unsubscribe(self, bell: bytes) -> None:
        pass

    def answer(self, epoch: int) -> None:
        """A loop that heard the flush of ``epoch`` answers on the acks channel."""
        for listener in self.listeners[b"asgi:e:acks"]:
            listener(epoch)


async def _no_epoch() -> bytes | None:
    return None


def _flushed(board: Board, answered: list[int], epoch: int, heard: int):
    async def flushed() -> list:
        for each in answered:  # these answers are read before the script's reply
            board.answer(each)
        return [str(epoch).encode(), str(heard).encode()]
    return flushed


def test_an_answer_read_before_the_flush_scripts_reply_counts():
    async def scenario():
        board = Board()
        watch = FlushWatch(board, "asgi:e", _no_epoch, lambda channel, epoch: None)
        await asyncio.wait_for(watch.announce(_flushed(board, [7], 7, 1)), ACK_TIMEOUT / 4)
        assert watch.epoch == 7
    asyncio.run(scenario())


def test_an_early_answer_counts_only_for_its_own_flush(monkeypatch, caplog):
    monkeypatch.setattr(flushes, "ACK_TIMEOUT", 0.05)  # the one answer missing is waited for this long

    async def scenario():
        board = Board()
        watch = FlushWatch(board, "asgi:e", _no_epoch, lambda channel, epoch: None)
        await watch.announce(_flushed(board, [6, 7], 7, 2))  # 6: another flush's answer
    with caplog.at_level(logging.WARNING, logger="reference_layers.redis.flushes"):
        asyncio.run(scenario())
    assert [record.getMessage() for record in caplog.records] == [
        "flush: 1 of 2 event loops listening did not answer within 0.05 s"]


@pytest.mark.parametrize("answers", [0, 1])
def test_answers_that_come_after_the_reply_still_end_the_wait(answers):
    async def scenario():
        board = Board()
        watch = FlushWatch(board, "asgi:e", _no_epoch, lambda channel, epoch: None)
        announcing = asyncio.ensure_future(watch.announce(_flushed(board, [9] * answers, 9, 2)))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not announcing.done()  # one answer (or two) still missing
        for _ in range(2 - answers):
            board.answer(9)
        await asyncio.wait_for(announcing, ACK_TIMEOUT / 4)
    asyncio.run(scenario())
