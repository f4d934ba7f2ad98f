"""RabbitMQChannelLayer over TLS (``amqps://``) on a real broker with a TLS-only listener.

The broker's certificate is signed by a throwaway authority; the client trusts it only where a
test says so (``SSL_CERT_FILE``, which OpenSSL reads for Python's default context), so the
certificate check itself is tested too.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from asgi_conformance import servers
from reference_layers.rabbitmq import BrokerUnavailable, RabbitMQChannelLayer
from tests.helpers import GENEROUS, run
from tests.tls_certificates import make_tls_files


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    """A broker from the machine's binaries with one more listener, TLS only: (its amqps URL,
    its plain amqp URL on that same TLS port, the CA file)."""
    files = make_tls_files(tmp_path_factory.mktemp("tls"))
    port = servers.free_port()
    config = (f"listeners.ssl.local = 127.0.0.1:{port}\n"
              f"ssl_options.cacertfile = {files.authority}\n"
              f"ssl_options.certfile = {files.certificate}\n"
              f"ssl_options.keyfile = {files.key}\n"
              "ssl_options.verify = verify_none\n"
              "ssl_options.fail_if_no_peer_cert = false\n")
    with servers.local_rabbitmq_server(config) as broker:
        if not servers.wait_for_accept("127.0.0.1", port, 60):
            pytest.fail(f"the broker's TLS listener never opened; log: {broker[0].log}")
        yield f"amqps://guest:guest@127.0.0.1:{port}/%2F", f"amqp://guest:guest@127.0.0.1:{port}/%2F", files.authority


def test_an_amqps_url_carries_sends_receives_and_groups_over_tls(tls_broker, monkeypatch):
    url, _, authority = tls_broker
    monkeypatch.setenv("SSL_CERT_FILE", str(authority))
    layer = RabbitMQChannelLayer(url=url, prefix=f"tls{secrets.token_hex(3)}", timeout=GENEROUS)

    async def scenario():
        try:
            channel, group = "tls.test", "tls-group"
            await layer.send(channel, {"type": "over.tls", "n": 1})
            assert await asyncio.wait_for(layer.receive(channel), GENEROUS) == {"type": "over.tls", "n": 1}
            specific = await layer.new_channel()
            await layer.group_add(group, specific)
            await layer.group_send(group, {"type": "group.copy"})
            assert await asyncio.wait_for(layer.receive(specific), GENEROUS) == {"type": "group.copy"}
            assert layer.broker_url == url
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
    url, _, _ = tls_broker
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # only the machine's own authorities
    assert_send_refused(url, "CERTIFICATE_VERIFY_FAILED")


def test_plain_amqp_to_the_tls_listener_fails_clearly(tls_broker):
    _, plain_url, _ = tls_broker  # the port speaks only TLS: the layer must not hang on it
    assert_send_refused(plain_url, "no RabbitMQ node answered")
