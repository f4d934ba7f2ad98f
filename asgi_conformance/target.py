"""The layer under test: where it comes from, how it is built, and what it declares.

Everything a user can get wrong on the command line (dotted path, JSON config, a class that
does not construct) is found here at start-up and reported as one :class:`TargetError` line.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, NamedTuple

from .features import DECLARABLE_FEATURES, EXTENSION_FEATURES
from .layer_access import close_quietly, layer_attribute

UNSUPPORTED_ATTRIBUTE = "conformance_unsupported"


class TargetError(Exception):
    """A problem with --asgi-layer / --asgi-layer-config, worded for the command line."""


@dataclass
class LayerTarget:
    """A layer factory plus the facts the suite needs to know about it."""

    factory: Callable[..., Any]
    config: dict[str, Any] = field(default_factory=dict)
    dotted_path: str | None = None
    unsupported: dict[str, str] = field(default_factory=dict)
    extensions: tuple[str, ...] = ()
    message_size_limit: int | None = None
    module: Any = None

    def build(self, **overrides: Any) -> Any:
        """``BACKEND(**CONFIG)`` as Django Channels calls it, with the test's overrides merged."""
        return self.factory(**{**self.config, **overrides})

    def missing(self, feature: str) -> str | None:
        """Why the layer does not offer ``feature``, or None if it does."""
        if feature in EXTENSION_FEATURES:
            if feature not in self.extensions:
                return f"layer does not list the {feature!r} extension (extensions={list(self.extensions)})"
            return None
        if feature in self.unsupported:
            return f"layer declares no {feature}: {self.unsupported[feature]}"
        return None


def parse_config(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TargetError(f"--asgi-layer-config is not valid JSON ({exc.msg} at char {exc.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise TargetError(f"--asgi-layer-config must be a JSON object, got {type(value).__name__}: {text!r}")
    return value


def import_dotted(path: str) -> tuple[ModuleType, Any]:
    """Import ``package.module.Attribute``; the error names what was missing."""
    module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise TargetError(f"--asgi-layer={path!r} is not a dotted path like 'package.module.LayerClass'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetError(f"--asgi-layer={path!r}: cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a module that crashes on import is a user error too
        raise TargetError(f"--asgi-layer={path!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    try:
        return module, getattr(module, attribute)
    except AttributeError:
        raise TargetError(f"--asgi-layer={path!r}: module {module_name!r} has no attribute {attribute!r}") from None


def parse_unsupported(values: list[str]) -> dict[str, str]:
    """``FEATURE`` or ``FEATURE=reason`` items from --asgi-unsupported."""
    declared = {}
    for value in values:
        feature, _, reason = value.partition("=")
        feature = feature.strip()
        if feature not in DECLARABLE_FEATURES:
            known = ", ".join(sorted(DECLARABLE_FEATURES))
            raise TargetError(f"--asgi-unsupported={value!r}: unknown feature {feature!r} (known: {known})")
        declared[feature] = reason.strip() or "declared on the command line"
    return declared


def inspect_layer(target: LayerTarget) -> LayerTarget:
    """Build one instance to prove the layer constructs, and read what it declares.

    The instance is built inside a running event loop, as Django Channels builds layers
    (some, like channels_rabbitmq, refuse to be built without one), and closed again.
    """
    try:
        layer, facts = asyncio.run(_build_and_read(target))
    except TargetError:
        raise
    except Exception as exc:  # noqa: BLE001
        where = target.dotted_path or "asgi_layer_factory"
        raise TargetError(
            f"{where}(**{target.config!r}) failed to construct: {type(exc).__name__}: {exc}"
        ) from None
    declared = dict(facts.unsupported or {})
    target.unsupported = {**declared, **target.unsupported}
    target.extensions = tuple(e for e in (facts.extensions or []) if isinstance(e, str))
    target.message_size_limit = facts.message_size_limit
    if target.module is None:
        target.module = sys.modules.get(type(layer).__module__)
    return target


class Declarations(NamedTuple):
    """What a layer instance says about itself, read as attributes (each may be absent: None)."""

    unsupported: Any
    extensions: Any
    message_size_limit: Any


async def _build_and_read(target: LayerTarget) -> tuple[Any, Declarations]:
    layer = target.build()
    for name in ("send", "receive", "new_channel"):
        if not callable(layer_attribute(layer, name)):
            raise TargetError(f"{type(layer).__name__} has no {name}() method: not a channel layer")
    facts = Declarations(
        unsupported=layer_attribute(layer, UNSUPPORTED_ATTRIBUTE),
        extensions=layer_attribute(layer, "extensions"),
        message_size_limit=layer_attribute(layer, "message_size_limit"),
    )
    await close_quietly(layer, 10)
    return layer, facts


def load_target(dotted_path: str, config_text: str | None, unsupported: list[str],
                extra_config: dict[str, Any] | None = None) -> LayerTarget:
    module, factory = import_dotted(dotted_path)
    if not callable(factory):
        raise TargetError(f"--asgi-layer={dotted_path!r} is not callable")
    config = {**parse_config(config_text), **(extra_config or {})}
    target = LayerTarget(factory=factory, config=config, dotted_path=dotted_path,
                         unsupported=parse_unsupported(unsupported), module=module)
    return inspect_layer(target)
