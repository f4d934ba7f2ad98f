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

from ..core.stats_command import stats_main
from .layer import RedisChannelLayer


def main(argv: list[str] | None = None) -> int:
    return stats_main(argv, prog="python -m reference_layers.redis", addresses="hosts", default=["redis://127.0.0.1:6379"],
                      build=lambda addresses, prefix: RedisChannelLayer(hosts=addresses, prefix=prefix))


if __name__ == "__main__":
    raise SystemExit(main())
