"""How many messages a channel may hold: ``capacity``, overridden per pattern by ``channel_capacity``.

Every send asks, so the answer for a channel name is cached once a pattern list exists.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from .config import positive_int
from .errors import LayerConfigError


class CapacityRules:
    """Per-channel capacity: ``channel_capacity`` patterns first (first match wins), else default.

    Patterns are glob strings or compiled regexes, matched against the full channel name as
    in Django Channels' documentation; a process-specific channel's messages then count
    against the capacity of its non-local part, shared by all of that process's channels.
    ``channel_capacity`` is the raw CONFIG value: a dict or a list of (pattern, capacity) pairs.
    """

    def __init__(self, default: int, channel_capacity: Any = None) -> None:
        self.default = positive_int("capacity", default)
        self._rules: list[tuple[re.Pattern[str], int]] = []
        self._cache: dict[str, int] = {}
        if channel_capacity is None:
            return
        items = channel_capacity.items() if isinstance(channel_capacity, dict) else channel_capacity
        try:
            items = list(items)
        except TypeError:
            raise LayerConfigError(f"channel_capacity must map patterns to capacities, got {channel_capacity!r}") from None
        for entry in items:
            if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
                raise LayerConfigError(f"channel_capacity entry must be (pattern, capacity), got {entry!r}")
            pattern, capacity = entry
            if isinstance(pattern, str):
                pattern = re.compile(fnmatch.translate(pattern))
            elif not isinstance(pattern, re.Pattern):
                raise LayerConfigError(f"channel_capacity pattern must be a glob str or compiled regex, got {pattern!r}")
            self._rules.append((pattern, positive_int(f"channel_capacity[{pattern.pattern!r}]", capacity)))

    @property
    def uniform(self) -> int | None:
        """Every channel's capacity when no pattern overrides it, else None."""
        return None if self._rules else self.default

    def for_channel(self, channel: str) -> int:
        if not self._rules:
            return self.default
        try:
            return self._cache[channel]
        except KeyError:
            pass
        capacity = next((cap for pattern, cap in self._rules if pattern.match(channel)), self.default)
        if len(self._cache) < 10_000:
            self._cache[channel] = capacity
        return capacity
