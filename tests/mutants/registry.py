"""The catalogue of mutants: which requirement each broken layer breaks, and what else it must keep.

A mutant registers itself with ``@breaks(...)`` where it is defined, so the list the mutant
test runs is the list of classes that exist: none can be written and forgotten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

LayerClass = TypeVar("LayerClass", bound=type)


@dataclass(frozen=True)
class Mutant:
    """One broken layer and the verdicts the suite must give it."""

    layer: type
    breaks: str  # the requirement id it exists to break: the suite must FAIL it
    also_breaks: tuple[str, ...]  # ids it cannot help breaking too: never a control
    keeps: tuple[str, ...]  # ids or areas run alongside that it must still PASS (beyond the control)

    @property
    def path(self) -> str:
        """The dotted path the suite (and its peer processes) import it by."""
        return f"{self.layer.__module__}.{self.layer.__qualname__}"

    @property
    def cross_process(self) -> bool:
        return self.breaks.startswith("XP-")

    @property
    def name(self) -> str:
        return f"{self.breaks}-{self.layer.__name__}"


MUTANTS: list[Mutant] = []


def breaks(requirement_id: str, *, also: tuple[str, ...] = (),
           keeps: tuple[str, ...] = ()) -> Callable[[LayerClass], LayerClass]:
    """Registers the decorated layer class as a mutant that breaks ``requirement_id``."""

    def register(layer: LayerClass) -> LayerClass:
        MUTANTS.append(Mutant(layer, requirement_id, also, keeps))
        return layer

    return register
