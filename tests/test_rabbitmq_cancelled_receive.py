"""A receive cancelled at the very moment the broker answers the layer stays cancelled.

On Python 3.10 and 3.11, ``asyncio.wait_for`` returns the awaited result, and so swallows a
cancel of its caller, when that cancel lands just as the awaited future completes (CPython
gh-86296; 3.12 rewrote wait_for). A receive that was starting a queue (declare, registry)
and was cancelled by the caller's own ``wait_for(receive, 0.02)`` just as the broker's
declare-ok came in carried on, started a consumer and waited for a message that the caller
only sends once that wait_for returns: a deadlock (suite CHAN-5, about 1 run in 6 on a
loaded machine). These tests cancel at that exact point, driven by the broker's own reply,
so they fail without the fix every time. Uses the session broker of conftest.py.
"""

from __future__ import annotations

import asyncio
import secrets

import pika.spec
import pytest

from reference_layers.rabbitmq import RabbitMQChannelLayer
from reference_layers.rabbitmq.futures import within
from tests.helpers import GENEROUS


def _cancel_on_next_declare_ok(link, task_of) -> asyncio.Event:
    """Cancel ``task_of()`` from pika's own dispatch of the next queue.declare-ok on the
    admin channel: the same loop turn in which the layer's future for that reply completes."""
    cancelled = asyncio.Event()

    def on_declare_ok(frame):
        task_of().cancel()
        cancelled.set()

    link.admin_channel.add_callback(on_declare_ok, [pika.spec.Queue.DeclareOk], one_shot=True)
    return cancelled


@pytest.mark.parametrize("kind", ["process-specific", "normal"])
def test_a_receive_cancelled_as_the_broker_answers_its_declare_stays_cancelled(rabbitmq_url, kind):
    async def scenario():
        layer = RabbitMQChannelLayer(url=rabbitmq_url)
        try:
            await layer.send(f"rmq-test.warm-up-{secrets.token_hex(5)}", {"type": "warm.up"})  # connected
            if kind == "process-specific":
                channel = await layer.new_channel()
            else:
                channel = f"rmq-test.cancel-{secrets.token_hex(5)}"
            link = layer._loops.current().session.link
            receive = None
            cancelled = _cancel_on_next_declare_ok(link, lambda: receive)
            receive = asyncio.ensure_future(layer.receive(channel))  # its first step declares the queue
            await asyncio.wait_for(cancelled.wait(), GENEROUS)
            await layer.send(channel, {"type": "after.cancel"})
            done, _ = await asyncio.wait({receive}, timeout=GENEROUS)
            assert done, "a receive cancelled as the broker answered its declare did not end"
            assert receive.cancelled(), (
                f"a receive cancelled as the broker answered its declare went on and returned "
                f"{receive.result()!r}" if receive.exception() is None else
                f"a cancelled receive raised {receive.exception()!r} instead of CancelledError")
            assert await asyncio.wait_for(layer.receive(channel), GENEROUS) == {"type": "after.cancel"}
        finally:
            await layer.close()

    asyncio.run(asyncio.wait_for(scenario(), 4 * GENEROUS))


@pytest.mark.parametrize("outcome", ["result", "exception"])
def test_within_never_loses_a_cancel_that_lands_as_the_awaited_future_completes(outcome):
    async def scenario():
        awaited = asyncio.get_running_loop().create_future()
        waiting = asyncio.ensure_future(within(awaited, GENEROUS))
        await asyncio.sleep(0)  # one turn: the task is inside within(), waiting on ``awaited``
        assert not waiting.done()
        if outcome == "result":
            awaited.set_result("reply")
        else:
            awaited.set_exception(ConnectionError("refused"))
        waiting.cancel()  # the same turn: asyncio.wait_for on 3.10/3.11 returned "reply" here
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())


def test_within_raises_timeout_error_and_cancels_what_it_awaited():
    async def scenario():
        awaited = asyncio.get_running_loop().create_future()
        with pytest.raises(asyncio.TimeoutError):
            await within(awaited, 0.01)
        assert awaited.cancelled()
        assert await within(asyncio.sleep(0, result="done"), GENEROUS) == "done"

    asyncio.run(scenario())
