"""Names shared by the consumers, the view, the command and the tests."""

WORKER_CHANNEL = "dropin-worker"  # a normal channel (no '!'): served by ``runworker``


def room_group(room: str) -> str:
    """The channel-layer group of a chat room."""
    return f"chat.{room}"
