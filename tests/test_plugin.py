"""The plugin as a user meets it: options, collection, start-up errors, the report, exit codes."""

import json
import textwrap

import pytest

from asgi_conformance.requirements import REQUIREMENTS
from asgi_conformance.settings import current_settings
from tests.suite_runner import run_suite

INMEMORY = "reference_layers.inmemory.InMemoryChannelLayer"

BROKEN_LAYERS = '''
from reference_layers.inmemory import InMemoryChannelLayer


class NoCapacity(InMemoryChannelLayer):
    """Breaks CAP-1 (a MUST): never raises ChannelFull."""

    def __init__(self, **config):
        config["capacity"] = 10_000
        super().__init__(**config)


class IgnoresChannelCapacity(InMemoryChannelLayer):
    """Breaks CAP-3 (a SHOULD): channel_capacity patterns are ignored."""

    def __init__(self, channel_capacity=None, **config):
        super().__init__(**config)


class Explodes(InMemoryChannelLayer):
    def __init__(self, **config):
        raise RuntimeError("cannot reach the moon")


class IgnoresCancellation(InMemoryChannelLayer):
    """A receive that swallows its cancellation and waits on: asyncio.wait_for and asyncio.run
    would wait for it for ever."""

    async def receive(self, channel):
        import asyncio

        never = asyncio.Event()
        while True:
            try:
                await never.wait()
            except asyncio.CancelledError:
                continue
'''


@pytest.fixture
def broken_layers(pytester):
    pytester.makepyfile(brokenlayers=BROKEN_LAYERS)
    return "brokenlayers"


def test_without_asgi_options_the_plugin_changes_nothing(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "ASGI conformance report" not in result.stdout.str()


def test_in_an_empty_folder_the_suite_and_only_the_suite_is_collected(pytester):
    pytester.makepyfile(test_user_code="def test_not_part_of_the_suite():\n    assert False\n")
    run = run_suite(pytester, INMEMORY, "--asgi-single-process", "--asgi-requirement=CAP-1")
    run.result.assert_outcomes(passed=1)
    assert "test_not_part_of_the_suite" not in run.result.stdout.str()
    assert run.status("CAP-1") == "PASS"


def test_the_report_is_printed_grouped_by_area_with_level_and_title(pytester):
    run = run_suite(pytester, INMEMORY, "--asgi-single-process", "--asgi-requirement=CAP-1")
    output = run.result.stdout.str()
    assert "ASGI conformance report" in output
    assert f"ASGI channel layer conformance: {INMEMORY}" in output
    assert "  Capacity" in output
    cap_line = next(line for line in run.result.outlines if line.strip().startswith("CAP-1 "))
    assert cap_line.split()[:3] == ["CAP-1", "MUST", "PASS"]
    assert "with capacity N, N sends succeed" in cap_line


def test_the_json_report_holds_every_requirement_with_its_tests(pytester):
    run = run_suite(pytester, INMEMORY, "--asgi-single-process", "--asgi-requirement=CAP-1")
    rows = {row["id"]: row for row in run.report["requirements"]}
    assert list(rows) == list(REQUIREMENTS)
    assert rows["CAP-1"]["level"] == "MUST"
    assert rows["CAP-1"]["tests"] and all(t["outcome"] == "PASS" for t in rows["CAP-1"]["tests"])
    assert rows["GRP-1"]["status"] == "NOT RUN"  # deselected by --asgi-requirement
    assert run.report["strict"] is True and run.report["layer"] == INMEMORY


def test_a_broken_must_fails_the_run_and_names_the_requirement(pytester, broken_layers):
    run = run_suite(pytester, f"{broken_layers}.NoCapacity", "--asgi-single-process", "--asgi-requirement=CAP-1")
    assert run.result.ret == 1
    assert run.status("CAP-1") == "FAIL"
    assert any("CAP-1" in line and "FAIL" in line for line in run.result.outlines)
    assert run.with_status("FAIL")["CAP-1"], "a FAIL carries the failing assertion as detail"


def test_a_missed_should_is_a_deviation_outside_strict_mode(pytester, broken_layers):
    run = run_suite(pytester, f"{broken_layers}.IgnoresChannelCapacity", "--asgi-single-process",
                    "--asgi-requirement=CAP-3", strict=False)
    assert run.result.ret == 0
    assert run.status("CAP-3") == "DEVIATION"
    assert any("CAP-3" in line and "DEVIATION" in line for line in run.result.outlines)


def test_a_missed_should_fails_in_strict_mode(pytester, broken_layers):
    run = run_suite(pytester, f"{broken_layers}.IgnoresChannelCapacity", "--asgi-single-process",
                    "--asgi-requirement=CAP-3", strict=True)
    assert run.result.ret == 1
    assert run.status("CAP-3") == "FAIL"


def _report_line(run, requirement_id: str) -> str:
    return next(line for line in run.result.outlines if f" {requirement_id} " in line and "  " in line)


def test_verdict_lines_are_coloured_by_status_and_passes_are_not(pytester, broken_layers):
    failing = run_suite(pytester, f"{broken_layers}.NoCapacity", "--asgi-single-process", "--color=yes",
                        "--asgi-requirement=CAP-1", "--asgi-requirement=MSG-2")
    deviating = run_suite(pytester, f"{broken_layers}.IgnoresChannelCapacity", "--asgi-single-process", "--color=yes",
                          "--asgi-requirement=CAP-3", strict=False)
    red, yellow, escape = "\x1b[31m", "\x1b[33m", "\x1b["
    assert red in _report_line(failing, "CAP-1")
    assert escape not in _report_line(failing, "MSG-2")
    assert yellow in _report_line(deviating, "CAP-3")


def test_a_layer_that_ignores_cancellation_fails_and_the_run_still_ends(pytester, broken_layers):
    run = run_suite(pytester, f"{broken_layers}.IgnoresCancellation", "--asgi-single-process",
                    "--asgi-requirement=CHAN-5", "--asgi-timeout=2", "-k", "cancelling_one_waiting", timeout=120)
    assert run.result.ret == 1
    assert run.status("CHAN-5") == "FAIL"
    assert any("ignored its cancellation" in detail for detail in run.with_status("FAIL")["CHAN-5"])


def test_the_run_settings_reach_a_suite_test_through_the_running_config(pytester):
    pytester.makepyfile(test_settings_seen=textwrap.dedent('''
        from asgi_conformance.runner import requirement
        from asgi_conformance.vocabulary import current_settings

        @requirement("CAP-1")
        async def test_sees_the_options():
            seen = current_settings()
            assert (seen.quiet_period, seen.timeout, seen.delivery_timeout, seen.strict) == (0.125, 7.0, 1.5, True), seen
    '''))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--asgi-layer={INMEMORY}", "--asgi-strict",
                                           "--asgi-quiet-period=0.125", "--asgi-timeout=7",
                                           "--asgi-delivery-timeout=1.5", "test_settings_seen.py")
    result.assert_outcomes(passed=1)


def test_an_in_process_run_leaves_the_calling_runs_settings_as_they_were(pytester):
    before = current_settings()
    run = run_suite(pytester, INMEMORY, "--asgi-single-process", "--asgi-requirement=CAP-1",
                    "--asgi-quiet-period=0.01", "--asgi-timeout=9", in_process=True)
    assert run.status("CAP-1") == "PASS"
    assert current_settings() == before


def test_declared_unsupported_features_are_skips_with_the_reason(pytester):
    run = run_suite(pytester, INMEMORY, "--asgi-single-process", "--asgi-requirement=CAP-1",
                    "--asgi-unsupported=capacity=this layer has no bounds")
    assert run.result.ret == 0
    assert run.status("CAP-1") == "SKIP"
    assert "this layer has no bounds" in run.with_status("SKIP")["CAP-1"][0]
    printed = " ".join(line.strip() for line in run.result.outlines)
    assert "layer declares no capacity: this layer has no bounds" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--asgi-layer=no_such_module.Layer"], "cannot import module 'no_such_module'"),
        (["--asgi-layer=reference_layers.inmemory.NoSuchLayer"], "has no attribute 'NoSuchLayer'"),
        (["--asgi-layer=justaname"], "is not a dotted path"),
        ([f"--asgi-layer={INMEMORY}", "--asgi-layer-config={not json"], "is not valid JSON"),
        ([f"--asgi-layer={INMEMORY}", "--asgi-layer-config=[1, 2]"], "must be a JSON object"),
        ([f"--asgi-layer={INMEMORY}", '--asgi-layer-config={"capacity": -1}'], "capacity must be a positive integer"),
        ([f"--asgi-layer={INMEMORY}", '--asgi-layer-config={"hosts": []}'], "unknown config key"),
        (["--asgi-layer=brokenlayers.Explodes"], "failed to construct: RuntimeError: cannot reach the moon"),
        ([f"--asgi-layer={INMEMORY}", "--asgi-unsupported=teleport"], "unknown feature 'teleport'"),
        ([f"--asgi-layer={INMEMORY}", "--asgi-requirement=NOPE-9"], "no such requirement id or area"),
        ([f"--asgi-layer={INMEMORY}", "--asgi-server=memcached"], "kind must be one of"),
    ],
)
def test_start_up_errors_are_one_clear_line(pytester, broken_layers, args, message):
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error_lines = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(error_lines) == 1 and message in error_lines[0], result.errlines
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_a_conftest_factory_runs_the_suite_with_asgi_suite(pytester):
    pytester.makeconftest(textwrap.dedent('''
        import pytest
        from reference_layers.inmemory import InMemoryChannelLayer

        MADE = []

        @pytest.fixture(scope="session")
        def asgi_layer_factory():
            def make(**overrides):
                MADE.append(overrides)
                return InMemoryChannelLayer(**{"expiry": 30, **overrides})
            return make

        def pytest_sessionfinish(session):
            print("\\nfactory calls:", len(MADE))
    '''))
    report = pytester.path / "r.json"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "--asgi-suite", "--asgi-single-process",
                                           "--asgi-requirement=CAP-1", f"--asgi-report={report}")
    result.assert_outcomes(passed=1)
    assert "factory calls:" in result.stdout.str() and "factory calls: 0" not in result.stdout.str()
    assert json.loads(report.read_text())["layer"] == "asgi_layer_factory fixture"


def test_asgi_suite_without_any_layer_says_what_to_do(pytester):
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--asgi-suite", "--asgi-requirement=CAP-1")
    assert result.ret != 0
    assert "no layer to test" in result.stdout.str() + result.stderr.str()


def test_requirement_selection_takes_a_whole_area(pytester):
    run = run_suite(pytester, INMEMORY, "--asgi-single-process", "--asgi-requirement=CAP")
    statuses = run.statuses()
    capacity_ids = {rid for rid, req in REQUIREMENTS.items() if req.area == "CAP"}
    assert {rid for rid, status in statuses.items() if status != "NOT RUN"} == capacity_ids
