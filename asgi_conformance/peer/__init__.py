"""A second process that drives the same channel layer on command, for the cross-process tests.

Three parts: ``frames`` (how requests and replies travel on the pipes), ``child``,
``commands`` and ``replies`` (the peer process, ``python -m asgi_conformance.peer``), and ``client``,
``group`` and ``errors`` (the test process's side: :class:`Peer`, :class:`PeerGroup`).
"""

from .client import Peer
from .errors import PeerCommandError, PeerDied, PeerFailure, PeerTimeout
from .frames import RemoteError, Reply, Request, read_frame, write_frame
from .group import PeerGroup

__all__ = [
    "Peer", "PeerCommandError", "PeerDied", "PeerFailure", "PeerGroup", "PeerTimeout",
    "RemoteError", "Reply", "Request", "read_frame", "write_frame",
]
