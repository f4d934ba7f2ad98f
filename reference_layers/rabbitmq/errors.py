"""The RabbitMQ layer's own errors, and URLs made safe to print in them."""

from __future__ import annotations


class BrokerUnavailable(ConnectionError):
    """No RabbitMQ node answered within the layer's ``timeout``, or the connection broke
    while a call that cannot be repeated safely (a publish) was in flight."""


class BrokerRefused(Exception):
    """The broker answered an admin command with a channel error (``reply_code``: 404 not
    found, 405 locked, 406 precondition failed)."""

    def __init__(self, reply_code: int, reply_text: str):
        super().__init__(f"{reply_code} {reply_text}")
        self.reply_code = reply_code


NOT_FOUND, PRECONDITION_FAILED = 404, 406  # BrokerRefused.reply_code values the layer handles


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    head, sep, tail = url.partition("@")
    if not sep:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.partition(':')[0]}:***@{tail}"
