"""What a call to a peer raises in the test process; every message names the peer and the call."""

from __future__ import annotations

from .frames import RemoteError


class PeerFailure(Exception):
    """Something went wrong with a peer process; the message says which peer and command."""


class PeerCommandError(PeerFailure):
    """A command raised in the peer; the remote class, message and traceback are attached."""

    def __init__(self, text: str, remote: RemoteError):
        super().__init__(text)
        self.remote_type = remote.type_name
        self.remote_mro = remote.class_names
        self.remote_message = remote.message
        self.remote_traceback = remote.traceback


class PeerTimeout(PeerFailure):
    """The peer did not answer in time; it has been killed, its state being unknown."""


class PeerDied(PeerFailure):
    """The peer process ended (crashed, was killed, or failed to start)."""
