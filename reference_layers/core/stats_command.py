"""``python -m reference_layers.redis --stats`` and its RabbitMQ twin: ``statistics()`` as JSON.

A networked layer's command builds one layer object from the addresses and prefix given, asks
it once and closes it. The counters of ChannelFull and missed group copies belong to a layer
object, so this fresh one prints zeros for them.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any


def stats_main(argv: list[str] | None, *, prog: str, addresses: str, default: list[str],
               build: Callable[[list[str], str], Any]) -> int:
    """Parse ``--stats --<addresses> A [A ...] --prefix P --channel NAME...`` and print the
    statistics of ``build(addresses, prefix)`` (built on the command's event loop)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--stats", action="store_true", required=True, help="print statistics() as JSON")
    parser.add_argument(f"--{addresses}", nargs="+", default=default, dest="addresses", metavar="URL")
    parser.add_argument("--prefix", default="asgi")
    parser.add_argument("--channel", action="append", default=None)
    args = parser.parse_args(argv)
    print(asyncio.run(_statistics(lambda: build(args.addresses, args.prefix), args.channel)))
    return 0


async def _statistics(build: Callable[[], Any], channels: list[str] | None) -> str:
    layer = build()
    try:
        text: str = (await layer.statistics(channels)).to_json()
        return text
    finally:
        await layer.close()
