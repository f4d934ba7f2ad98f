"""``python -m asgi_conformance.peer``: the peer process (see :mod:`asgi_conformance.peer.child`)."""

from .child import main

main()
