"""RabbitMQChannelLayer over TLS (``amqps://``) on a real broker with a TLS-only listener.

The broker's certificate is signed by a throwaway authority; the client trusts it only where a
test says so (``SSL_CERT_FILE``, which OpenSSL reads for Python's default context), so the
certificate check itself is tested too.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest

from reference_layers.rabbitmq import BrokerUnavailable, RabbitMQChannelLayer
from tests.helpers import GENEROUS, run
from tests.rabbitmq_nodes import TLSBroker, tls_rabbitmq_node


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory) -> Iterator[TLSBroker]:
    """A broker from the machine's binaries with one more listener, TLS only."""
    with tls_rabbitmq_node(tmp_path_factory.mktemp("tls")) as broker:
        yield broker


def test_an_amqps_url_carries_sends_receives_and_groups_over_tls(tls_broker, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_broker.authority))
    layer = RabbitMQChannelLayer(url=tls_broker.url, prefix=f"tls{secrets.token_hex(3)}", timeout=GENEROUS)

    async def scenario():
        try:
            channel, group = "tls.test", "tls-group"
            await layer.send(channel, {"type": "over.tls", "n": 1})
            assert await asyncio.wait_for(layer.receive(channel), GENEROUS) == {"type": "over.tls", "n": 1}
            specific = await layer.new_channel()
            await layer.group_add(group, specific)
            await layer.group_send(group, {"type": "group.copy"})
            assert await asyncio.wait_for(layer.receive(specific), GENEROUS) == {"type": "group.copy"}
            assert layer.broker_url == tls_broker.url
        finally:
            await layer.flush()
            await layer.close()

    run(scenario())


def assert_send_refused(url: str, reason: str) -> None:
    """A send to ``url`` ends in BrokerUnavailable saying ``reason``: a clear error, no hang."""
    layer = RabbitMQChannelLayer(url=url, timeout=2)

    async def scenario():
        try:
            with pytest.raises(BrokerUnavailable, match=reason):
                await asyncio.wait_for(layer.send("tls.refused", {"type": "x"}), GENEROUS)
        finally:
            await layer.close()

    run(scenario())


def test_a_broker_certificate_nobody_trusts_is_refused_clearly(tls_broker, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # only the machine's own authorities
    assert_send_refused(tls_broker.url, "CERTIFICATE_VERIFY_FAILED")


def test_plain_amqp_to_the_tls_listener_fails_clearly(tls_broker):
    # The port speaks only TLS: the layer must not hang on it.
    assert_send_refused(tls_broker.plain_url, "no RabbitMQ node answered")
