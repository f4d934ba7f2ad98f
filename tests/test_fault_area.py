"""The FAULT area end to end: our layers judged on real servers the plugin starts and faults,
the skips that say why, and mutants proving each FAULT test can fail.

A layer bug the area finds is not a reason to soften it: such a case is an ``xfail(strict=True)``
here naming the bug, so it turns into a failure the day the layer is fixed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from asgi_conformance import faults
from asgi_conformance.requirements import REQUIREMENTS
from asgi_conformance.servers import Fault
from tests.suite_runner import run_suite

REPO_ROOT = Path(__file__).resolve().parents[1]
REDIS = "reference_layers.redis.RedisChannelLayer"
RABBITMQ = "reference_layers.rabbitmq.RabbitMQChannelLayer"
INMEMORY = "reference_layers.inmemory.InMemoryChannelLayer"
MUTANTS = "tests.mutants.faults"
FAULT_IDS = [rid for rid, requirement in REQUIREMENTS.items() if requirement.area == "FAULT"]
# Only --asgi-server=redis-sentinel offers a failover (tests/test_sentinel.py runs FAULT-7 there);
# on the redis and rabbitmq kinds FAULT-7 SKIPs, saying so.
NO_FAILOVER = "FAULT-7"
FAULTS = ("--asgi-faults", "--asgi-requirement=FAULT")
# Short enough that a hanging call costs little, long enough for a RabbitMQ restart's reconnect.
QUICK = "--asgi-fault-timeout=10"

@pytest.fixture
def repo_importable(monkeypatch):
    """The suite runs in pytester's empty folder; it (and its peers) must import tests.mutants."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))


def _fault_verdicts(run, ids=FAULT_IDS) -> dict[str, str]:
    return {rid: run.status(rid) for rid in ids}


def _all_pass_but_failover(ids) -> dict[str, str]:
    return {rid: "SKIP" if rid == NO_FAILOVER else "PASS" for rid in ids}


def _explain(run, verdicts: dict[str, str], expected: dict[str, str]) -> str:
    return "\n".join(f"{rid}: {verdicts[rid]} {run.with_status(verdicts[rid]).get(rid)}"
                     for rid in expected if verdicts[rid] != expected[rid]) or "\n".join(run.result.outlines[-40:])


def test_the_suites_fault_names_are_the_fault_handles():
    """The suite names faults by value so it need not import the servers package."""
    assert {faults.RESTART, faults.PAUSE, faults.DROP_CONNECTIONS, faults.FAILOVER} == {f.value for f in Fault}


# --- our layers ---------------------------------------------------------------------------------

@pytest.mark.redis
@pytest.mark.parametrize("server", ["redis", "redis:3"])
def test_our_redis_layer_passes_the_fault_area_in_strict_mode(pytester, server):
    run = run_suite(pytester, REDIS, f"--asgi-server={server}", *FAULTS, QUICK, timeout=400)
    verdicts, expected = _fault_verdicts(run), _all_pass_but_failover(FAULT_IDS)
    assert verdicts == expected, _explain(run, verdicts, expected)
    skip = " ".join(run.with_status("SKIP")[NO_FAILOVER])
    assert "offer no failover" in skip, skip


@pytest.mark.rabbitmq
@pytest.mark.timeout(400)
def test_our_rabbitmq_layer_passes_the_fault_area_in_strict_mode(pytester):
    # The default fault timeout: the layer gives up connecting to a broker that is not there
    # after more than 10 s (within 30).
    run = run_suite(pytester, RABBITMQ, "--asgi-server=rabbitmq", "--asgi-server-config-key=url", *FAULTS,
                    timeout=350)
    verdicts, expected = _fault_verdicts(run), _all_pass_but_failover(FAULT_IDS)
    assert verdicts == expected, _explain(run, verdicts, expected)
    assert run.result.ret == pytest.ExitCode.OK


# --- skips that say why -----------------------------------------------------------------------

@pytest.mark.redis
def test_without_asgi_faults_every_fault_test_skips_saying_so(pytester):
    run = run_suite(pytester, REDIS, "--asgi-server=redis", "--asgi-requirement=FAULT", in_process=True)
    assert _fault_verdicts(run) == dict.fromkeys(FAULT_IDS, "SKIP")
    for rid in FAULT_IDS:
        reason = " ".join(run.with_status("SKIP")[rid])
        assert "--asgi-faults" in reason and "--asgi-server" not in reason, (rid, reason)


def test_a_layer_without_a_server_skips_every_fault_test_saying_it_needs_none(pytester):
    run = run_suite(pytester, INMEMORY, "--asgi-single-process", *FAULTS, in_process=True)
    assert _fault_verdicts(run) == dict.fromkeys(FAULT_IDS, "SKIP")
    for rid in FAULT_IDS:
        reason = " ".join(run.with_status("SKIP")[rid])
        if rid != "FAULT-8":  # FAULT-8 is a cross-process rule: --asgi-single-process skips it first
            assert "needs no server" in reason and "--asgi-server=KIND" in reason, (rid, reason)


# --- proof the FAULT tests can fail -----------------------------------------------------------------

BROKEN = {  # mutant class: the FAULT id it breaks, and what the failure must say
    "HidesTheAddress": ("FAULT-1", "names no port"),
    "GivesUpAfterALostConnection": ("FAULT-2", "still failed 10 s after the restart"),
    "WaitsOnADeadConnection": ("FAULT-3", "hung for 6 s in receive() after the restart"),
    "RetriesSlowSends": ("FAULT-4", "delivered twice from this process: ["),
    "RedeliversAfterADrop": ("FAULT-5", "delivered twice from this process: ["),
    "ForgetsMemberships": ("FAULT-6", "the membership made before the restart was lost"),
    "DefersFailedSends": ("FAULT-8", "out of order from peer-"),
}
MUTANT_FAULT_TIMEOUT = "--asgi-fault-timeout=6"  # short: some of them hang


@pytest.mark.redis
def test_the_plain_layer_the_mutants_break_passes_the_fault_area(pytester, repo_importable):
    run = run_suite(pytester, f"{MUTANTS}.PlainRedisLayer", "--asgi-server=redis", *FAULTS, QUICK, in_process=True)
    verdicts, expected = _fault_verdicts(run), _all_pass_but_failover(FAULT_IDS)
    assert verdicts == expected, _explain(run, verdicts, expected)


@pytest.mark.redis
@pytest.mark.parametrize(("mutant", "rid", "says"), [(mutant, *broken) for mutant, broken in BROKEN.items()])
def test_each_fault_mutant_fails_the_rule_it_breaks_saying_how(pytester, repo_importable, mutant, rid, says):
    run = run_suite(pytester, f"{MUTANTS}.{mutant}", "--asgi-server=redis", "--asgi-faults", MUTANT_FAULT_TIMEOUT,
                    f"--asgi-requirement={rid}", in_process=True)
    details = run.with_status(run.status(rid)).get(rid)
    assert run.status(rid) == "FAIL", details
    assert any(says in detail for detail in details), details


# FAULT-7's mutant needs the Sentinel kind: a run costs a set's start, a failover and the 15 s
# window the mutant fails in, so it and its control are extended runs.
FAILOVER_MUTANT = "ResolvesTheMasterOnce"


@pytest.mark.redis
@pytest.mark.extended
@pytest.mark.parametrize(("layer", "verdict"), [("PlainRedisLayer", "PASS"), (FAILOVER_MUTANT, "FAIL")])
def test_a_layer_that_resolves_the_master_once_fails_fault_7_and_its_base_passes(
        pytester, repo_importable, layer, verdict):
    run = run_suite(pytester, f"{MUTANTS}.{layer}", "--asgi-server=redis-sentinel", "--asgi-faults",
                    MUTANT_FAULT_TIMEOUT, "--asgi-requirement=FAULT-7", in_process=True)
    details = run.with_status(run.status(NO_FAILOVER)).get(NO_FAILOVER)
    assert run.status(NO_FAILOVER) == verdict, details
    if verdict == "FAIL":
        assert any("still failed 15 s after the failover" in detail for detail in details), details


def test_every_fault_id_has_a_mutant():
    assert sorted({rid for rid, _ in BROKEN.values()} | {NO_FAILOVER}) == sorted(FAULT_IDS)
