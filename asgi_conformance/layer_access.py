"""Reaching into a layer of unknown quality without letting its errors mask a verdict."""

from __future__ import annotations

import inspect
from typing import Any

from .bounded import within


def layer_attribute(layer: object, name: str) -> Any:
    """``getattr`` that treats any error as absent (some layers' __getattr__ needs a loop or more)."""
    try:
        return getattr(layer, name, None)
    except Exception:  # noqa: BLE001
        return None


async def close_quietly(layer: object, timeout: float) -> None:
    """Call the layer's ``close()`` (or channels_redis' ``close_pools()``), ignoring its errors."""
    for closer in ("close", "close_pools"):
        method = layer_attribute(layer, closer)
        if callable(method):
            try:
                result = method()
                if inspect.isawaitable(result):
                    await within(result, timeout)
            except Exception:  # noqa: BLE001 - cleanup must not mask the test's own verdict
                pass
            return
