"""Every CHAN/GRP/FLUSH/EXT/ASYNC/LOOP requirement can fail: the suite reports it FAIL (strict)
for a layer broken in exactly that way, and PASS for the unbroken in-memory layer."""

from pathlib import Path

import pytest

from tests.suite_runner import run_suite

REPO_ROOT = Path(__file__).resolve().parent.parent
INMEMORY = "reference_layers.inmemory.InMemoryChannelLayer"

MUTANTS = [
    ("CHAN-1", "ReceivesNewestFirst"),
    ("CHAN-2", "CopiesToTwoWaitingReceivers"),
    ("CHAN-3", "SendWaitsForAReceiver"),
    ("CHAN-4", "ReceiveTimesOutWhenIdle"),
    ("CHAN-5", "CancelStrandsOtherWaiters"),
    ("CHAN-6", "ProcessChannelsShareOneQueue"),
    ("CHAN-7", "PrefetchesForOneReceiver"),
    ("CHAN-7", "OrphansWaitersWhenEmptied"),
    ("CHAN-8", "CancelAfterTakeLosesMessage"),
    ("CHAN-9", "ServesBusiestChannelFirst"),
    ("GRP-1", "GroupAddNotIdempotent"),
    ("GRP-2", "GroupDiscardRaisesForNonMember"),
    ("GRP-3", "GroupSendToUnknownGroupRaises"),
    ("GRP-4", "OneGroupPerChannel"),
    ("GRP-5", "GroupSendIgnoresSizeLimit"),
    ("FLUSH-1", "FlushStrandsBlockedReceivers"),
    ("FLUSH-1", "FlushKeepsGroups"),
    ("EXT-1", "ExtensionsAsTuple"),
    ("ASYNC-1", "SyncGroupDiscard"),
    ("LOOP-1", "BoundToFirstEventLoop"),
    ("LOOP-1", "CloseLeavesTaskRunning"),
]
AREAS = ["CHAN", "GRP", "FLUSH", "EXT", "ASYNC", "LOOP"]


@pytest.fixture
def importable_mutants(monkeypatch):
    """The suite runs in pytester's empty folder; let it import tests.mutants_part2."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))


@pytest.mark.parametrize(("requirement_id", "mutant"), MUTANTS, ids=[f"{r}-{m}" for r, m in MUTANTS])
def test_the_suite_fails_a_layer_that_breaks_the_requirement(pytester, importable_mutants, requirement_id, mutant):
    run = run_suite(pytester, f"tests.mutants_part2.{mutant}", "--asgi-single-process",
                    f"--asgi-requirement={requirement_id}", in_process=True)
    assert run.status(requirement_id) == "FAIL", (
        f"{mutant} breaks {requirement_id} but the suite says {run.status(requirement_id)}:\n"
        + "\n".join(run.result.outlines[-40:]))


def test_every_requirement_of_these_areas_has_a_mutant():
    from asgi_conformance.requirements import REQUIREMENTS

    ids = {rid for rid, req in REQUIREMENTS.items() if req.area in AREAS}
    assert ids == {rid for rid, _ in MUTANTS}


def test_the_unbroken_in_memory_layer_passes_these_areas(pytester):
    run = run_suite(pytester, INMEMORY, "--asgi-single-process",
                    *(f"--asgi-requirement={area}" for area in AREAS), in_process=True)
    statuses = {rid: status for rid, status in run.statuses().items() if rid.split("-")[0] in AREAS}
    assert set(statuses.values()) == {"PASS"}, statuses
