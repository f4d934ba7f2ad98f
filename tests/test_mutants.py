"""Every requirement can fail: the suite FAILs each mutant (tests/mutants/) on the requirement it
breaks, and PASSes it on a requirement it keeps; the reference layer passes them all.

The list of requirements comes from the catalogue, the list of mutants from their own
``@breaks`` registrations: a new requirement without a mutant (or an exemption saying why)
fails here, and so does a mutant the suite cannot tell from a correct layer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from asgi_conformance.requirements import REQUIREMENTS
from tests.ipc_helpers import remove_segment, unique_prefix
from tests.mutants import MUTANTS, Mutant, cross_process
from tests.suite_runner import run_suite

REPO_ROOT = Path(__file__).resolve().parents[1]
INMEMORY = "reference_layers.inmemory.InMemoryChannelLayer"

# Requirements proven to catch bugs elsewhere, each with where.
EXEMPT = {
    # The state machine finds its bugs through tests/broken_for_model.py, a layer per broken
    # operation; tests/test_model_finds_bugs.py runs them.
    "MODEL-1": "tests/test_model_finds_bugs.py",
    # FAULT-* need a real server to fault, so their mutants (tests/mutants/faults.py) run there;
    # FAULT-7's on the redis-sentinel kind, the one that offers a failover.
    **{f"FAULT-{n}": "proven in tests/test_fault_area.py against layers that fail them" for n in range(1, 9)},
}
CROSS_PROCESS_WAYS = 2  # distinct mutants per XP requirement: one way to break it is not enough
CONTROLS = ("MSG-2", "NAME-2")  # quick requirements every mutant keeps unless it names them
# A mutant's broken requirement fails by a message that never comes: 2 s to arrive, not the
# default 5, is still far above a delivery on one machine, and each failing test waits it out.
MUTANT_DELIVERY = "--asgi-delivery-timeout=2"


def _ids(*ids_or_areas: str) -> list[str]:
    """Requirement ids, an area name standing for every id of that area."""
    return [rid for rid, req in REQUIREMENTS.items() if rid in ids_or_areas or req.area in ids_or_areas]


def _control(mutant: Mutant) -> str:
    return next(rid for rid in CONTROLS if rid not in {mutant.breaks, *mutant.also_breaks})


def _expected(mutant: Mutant) -> dict[str, str]:
    """The verdict of every requirement the mutant's run checks.

    A cross-process mutant's run checks every XP id, so the other XP ids it names as broken
    are shown to FAIL and the rest to PASS; a single-process mutant's ``also_breaks`` are named
    (never a control) but not run, as a rule broken by a hang would cost minutes to prove.
    """
    broken = {mutant.breaks, *mutant.also_breaks}
    checked = _ids(mutant.breaks, _control(mutant), *mutant.keeps, *(("XP",) if mutant.cross_process else ()))
    return {rid: "FAIL" if rid in broken else "PASS" for rid in checked}


@pytest.fixture
def repo_importable(monkeypatch):
    """The suite runs in pytester's empty folder; it (and its peers) must still import tests.mutants."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))


def test_every_requirement_has_a_mutant_or_says_where_it_is_proven():
    covered = {mutant.breaks for mutant in MUTANTS}
    assert covered <= set(REQUIREMENTS), f"mutants of unknown requirements: {covered - set(REQUIREMENTS)}"
    assert not covered & set(EXEMPT), f"exempt yet covered here: {covered & set(EXEMPT)}"
    missing = set(REQUIREMENTS) - covered - set(EXEMPT)
    assert not missing, f"requirements no mutant breaks: {sorted(missing)}"


def test_every_cross_process_requirement_is_broken_in_several_ways():
    ways = {rid: [m.layer.__name__ for m in MUTANTS if m.breaks == rid] for rid in _ids("XP")}
    assert all(len(names) >= CROSS_PROCESS_WAYS for names in ways.values()), ways


def test_no_mutant_names_its_own_requirement_as_a_rule_it_keeps():
    for mutant in MUTANTS:
        assert not {mutant.breaks, *mutant.also_breaks} & set(_ids(*mutant.keeps)), mutant


@pytest.mark.parametrize("mutant", MUTANTS, ids=[mutant.name for mutant in MUTANTS])
def test_the_suite_fails_exactly_what_the_mutant_breaks(pytester, repo_importable, mutant):
    expected = _expected(mutant)
    selection = [f"--asgi-requirement={rid}" for rid in expected]
    if mutant.cross_process:
        prefix = unique_prefix("mutant")
        try:  # peers meet this process through the prefix, as with the IPC reference layer
            run = run_suite(pytester, mutant.path, *selection, MUTANT_DELIVERY, config={"prefix": prefix},
                            in_process=True)
        finally:
            remove_segment(prefix)
            shutil.rmtree(cross_process.files_of(prefix), ignore_errors=True)
    else:
        run = run_suite(pytester, mutant.path, "--asgi-single-process", *selection, MUTANT_DELIVERY, in_process=True)
    verdicts = {rid: run.status(rid) for rid in expected}
    assert verdicts == expected, (
        f"{mutant.layer.__name__}: {({rid: v for rid, v in verdicts.items() if v != expected[rid]})}\n"
        + "\n".join(f"{rid}: {run.with_status(verdicts[rid]).get(rid)}" for rid in expected
                    if verdicts[rid] != expected[rid]))


def test_the_reference_in_memory_layer_passes_what_the_single_process_mutants_break(pytester):
    areas = sorted({REQUIREMENTS[m.breaks].area for m in MUTANTS if not m.cross_process})
    run = run_suite(pytester, INMEMORY, "--asgi-single-process",
                    *(f"--asgi-requirement={area}" for area in areas), in_process=True)
    statuses = {rid: run.status(rid) for rid in _ids(*areas)}
    assert statuses == dict.fromkeys(statuses, "PASS"), {
        rid: run.with_status(status).get(rid) for rid, status in statuses.items() if status != "PASS"}


DJANGO_JUDGED_AREAS = ("MSG", "NAME", "CAP", "EXP")


def test_django_channels_in_memory_layer_is_judged_on_messages_names_capacity_and_expiry(pytester):
    """Its verdicts are findings about that layer, printed here; the suite is never softened for them."""
    run = run_suite(pytester, "channels.layers.InMemoryChannelLayer", "--asgi-single-process",
                    *[f"--asgi-requirement={area}" for area in DJANGO_JUDGED_AREAS], in_process=True)
    judged = _ids(*DJANGO_JUDGED_AREAS)
    for rid in judged:
        details = run.with_status(run.status(rid)).get(rid) or []
        print(f"channels.layers.InMemoryChannelLayer {rid}: {run.status(rid)} {details[:1]}")
    assert all(run.status(rid) in {"PASS", "FAIL", "SKIP"} for rid in judged), run.statuses()
    skip_reason = " ".join(run.with_status("SKIP").get("MSG-5", []))
    assert "message_size_limit" in skip_reason, "MSG-5 must be skipped, naming the attribute it looks for"
