"""The features a layer may lack, by name: what ``needs=``, ``require()`` and ``offers()`` accept.

Two kinds: features a layer declares it does not offer (option ``--asgi-unsupported``, or the
class attribute ``conformance_unsupported = {feature: reason}``), and extensions, which a layer
offers by listing them in its own ``extensions``.
"""

from __future__ import annotations

DECLARABLE_FEATURES: dict[str, str] = {
    "cross-process": "messages cross process boundaries (XP-*)",
    "normal-channels": "channels without '!' shared by several receivers",
    "backlog": ("messages sent to a channel before any receive began on it are kept for it; "
                "a layer's own new_channel() names count as received on from their creation "
                "(a pub/sub layer subscribes them then), so only other names need this"),
    "capacity": "per-channel capacity and ChannelFull",
    "expiry": "message expiry",
    "group-expiry": "group membership expiry",
}
EXTENSION_FEATURES: tuple[str, ...] = ("groups", "flush")


def is_known(feature: str) -> bool:
    return feature in DECLARABLE_FEATURES or feature in EXTENSION_FEATURES
