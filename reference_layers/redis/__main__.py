"""``python -m reference_layers.redis --stats``: what a deployment's Redis layer holds, as JSON.

    --stats                  print statistics(): messages waiting per channel and the age of
                             the oldest, and the state of the connection to each shard
    --hosts URL [URL ...]    the layer's ``hosts`` (default redis://127.0.0.1:6379)
    --prefix PREFIX          the layer's ``prefix`` (default asgi)
    --channel NAME           only these channels (repeatable); default every channel found

The counters of ChannelFull and missed group deliveries belong to a layer object, so a fresh
process prints zeros for them: read them from ``await layer.statistics()`` in the process.
"""

from __future__ import annotations

import argparse
import asyncio

from .layer import RedisChannelLayer


async def _statistics(args: argparse.Namespace) -> str:
    layer = RedisChannelLayer(hosts=args.hosts, prefix=args.prefix)
    try:
        return (await layer.statistics(args.channel)).to_json()
    finally:
        await layer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_layers.redis")
    parser.add_argument("--stats", action="store_true", required=True, help="print statistics() as JSON")
    parser.add_argument("--hosts", nargs="+", default=["redis://127.0.0.1:6379"])
    parser.add_argument("--prefix", default="asgi")
    parser.add_argument("--channel", action="append", default=None)
    args = parser.parse_args(argv)
    print(asyncio.run(_statistics(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
