"""CAP-*: capacity per channel, ChannelFull, and group_send's silence about full members."""

import pytest

from asgi_conformance.spec import channel_full_class_of, expect_message, fresh_channel, requirement


@requirement("CAP-1", needs=["capacity"])
async def test_n_sends_fit_and_the_next_raises_channel_full(layers):
    layer = layers.make(capacity=3)
    channel = fresh_channel()
    for index in range(3):
        await layer.send(channel, {"type": "test.fill", "index": index})
    with pytest.raises(Exception) as caught:
        await layer.send(channel, {"type": "test.fill", "index": 3})
    assert channel_full_class_of(caught.value), f"expected ChannelFull, got {caught.value!r}"
    for index in range(3):
        assert (await expect_message(layer, channel))["index"] == index
