"""``python -m reference_layers.rabbitmq --stats``: what a deployment's RabbitMQ layer holds, as JSON.

    --stats                  print statistics(): messages waiting per channel and the state of
                             the connection to each node
    --url URL [URL ...]      the layer's broker URL, or its cluster's nodes (default
                             amqp://guest:guest@localhost:5672/%2F)
    --prefix PREFIX          the layer's ``prefix`` (default asgi)
    --channel NAME           only these channels (repeatable); default every channel found

The counters of ChannelFull and missed group copies belong to a layer object, so a fresh
process prints zeros for them: read them from ``await layer.statistics()`` in the process.
"""

from __future__ import annotations

from ..core.stats_command import stats_main
from .config import DEFAULT_URL
from .layer import RabbitMQChannelLayer


def main(argv: list[str] | None = None) -> int:
    return stats_main(argv, prog="python -m reference_layers.rabbitmq", addresses="url", default=[DEFAULT_URL],
                      build=lambda addresses, prefix: RabbitMQChannelLayer(urls=addresses, prefix=prefix))


if __name__ == "__main__":
    raise SystemExit(main())
