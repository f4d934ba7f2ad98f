"""Plain synchronous Django code talking to the layer, as views and commands do."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from .groups import room_group


def announce(room: str, text: str, origin: str) -> None:
    """Send ``text`` to everyone in ``room`` from sync code."""
    async_to_sync(get_channel_layer().group_send)(
        room_group(room), {"type": "chat.message", "text": text, "origin": origin})
