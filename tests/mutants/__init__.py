"""Broken channel layers, one module per area, each class breaking one rule of the spec.

tests/test_mutants.py runs the suite against every one and expects the requirement it breaks
to FAIL, and a requirement it keeps to PASS: a suite test that cannot fail proves nothing.
Importing this package imports every area module, so ``registry.MUTANTS`` lists them all.

- ``messages`` (MSG), ``names`` (NAME), ``channels`` (CHAN), ``capacity`` (CAP), ``expiry`` (EXP),
  ``groups`` (GRP), ``flush`` (FLUSH), ``api`` (EXT, ASYNC, LOOP): the in-memory reference layer
  with one plausible bug each;
- ``cross_process`` (XP): the IPC reference layer with state one process keeps that the
  others cannot see, or with one cross-process step done wrong; every single-process rule kept.
"""

from tests.mutants import (  # noqa: F401 - imported for their @breaks registrations
    api,
    capacity,
    channels,
    cross_process,
    expiry,
    flush,
    groups,
    messages,
    names,
)
from tests.mutants.registry import MUTANTS, Mutant

__all__ = ["MUTANTS", "Mutant"]
