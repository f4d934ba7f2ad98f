"""Markers for tests whose server comes through ``request.getfixturevalue`` (per parameter).

conftest.py marks a test by the server fixtures it names; a parametrised test that picks its
fixture at run time names none, so its parameters carry the marker themselves.
"""

from __future__ import annotations

import pytest

MARKER_OF_FIXTURE = {
    "redis_server": "redis", "redis_urls": "redis", "redis_shards": "redis", "redis_shard_urls": "redis",
    "rabbitmq_broker": "rabbitmq", "rabbitmq_url": "rabbitmq",
}


def needing(value: str, *fixtures: str | None):
    """``value`` as a parameter marked for the servers its ``fixtures`` start."""
    marks = sorted({MARKER_OF_FIXTURE[name] for name in fixtures if name})
    return pytest.param(value, marks=[getattr(pytest.mark, marker) for marker in marks])
