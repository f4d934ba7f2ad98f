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

import argparse
import asyncio

from .config import DEFAULT_URL
from .layer import RabbitMQChannelLayer


async def _statistics(args: argparse.Namespace) -> str:
    layer = RabbitMQChannelLayer(urls=args.url, prefix=args.prefix)
    try:
        return (await layer.statistics(args.channel)).to_json()
    finally:
        await layer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_layers.rabbitmq")
    parser.add_argument("--stats", action="store_true", required=True, help="print statistics() as JSON")
    parser.add_argument("--url", nargs="+", default=[DEFAULT_URL])
    parser.add_argument("--prefix", default="asgi")
    parser.add_argument("--channel", action="append", default=None)
    args = parser.parse_args(argv)
    print(asyncio.run(_statistics(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
