"""Parsing the CONFIG values every layer takes, so all four refuse the same bad values.

Each raises ``LayerConfigError`` naming the key, when the layer is built rather than at its
first send.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .errors import LayerConfigError


def positive_number(name: str, value: Any) -> float:
    """``value`` if it is a positive int or float (a duration in seconds), else LayerConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise LayerConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return value


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is a positive int (not a bool), else LayerConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise LayerConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def positive_int_or_none(name: str, value: Any) -> int | None:
    """Like :func:`positive_int`, but None (no limit) passes too."""
    return None if value is None else positive_int(name, value)


def reject_unknown_keys(layer: str, unknown: Mapping[str, Any], known: Iterable[str]) -> None:
    """LayerConfigError if CONFIG held keys the layer does not take: a typo must not pass silently."""
    if unknown:
        raise LayerConfigError(
            f"{layer} got unknown config key(s) {sorted(unknown)}; it takes " + ", ".join(known))
