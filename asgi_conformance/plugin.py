"""The pytest plugin: options, the fixtures the suite uses, collecting the suite, the report.

Inert unless ``--asgi-layer`` or ``--asgi-suite`` is given, so installing the package
changes nothing for other projects' test runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterator

import pytest

from . import requirements
from .faults import ServerUnderTest
from .features import DECLARABLE_FEATURES
from .report import DEVIATION, FAIL, PASS, SKIP, STATUS_MARKUP, ConformanceReport, TestOutcome
from .runner import MARKER, LayerPool, LayerToBuild
from .settings import DEFAULTS, Settings, current_settings, in_force
from .target import LayerTarget, TargetError, inspect_layer, load_target, parse_unsupported
from .vocabulary import require

if TYPE_CHECKING:
    from .peer import PeerGroup

SUITE_DIR = Path(__file__).parent / "suite"
SERVER_CONFIG_KEYS = {"redis": "hosts", "rabbitmq": "url", "redis-sentinel": "hosts", "redis-cluster": "hosts",
                      "valkey": "hosts", "postgres": "url", "nats": "servers"}
# kinds whose config entry is a list of shards, even of one
LISTED_KINDS = frozenset({"redis", "redis-sentinel", "redis-cluster", "valkey"})
# A SHOULD the layer missed, outside strict mode: the detail, as a user property of the call's
# report. pytest shows the test as xfailed; the conformance report reads this entry alone.
DEVIATION_PROPERTY = "asgi_conformance_deviation"
# The requirement id(s) a test checks, on every test: JUnit output names them that way.
REQUIREMENT_PROPERTY = "asgi_requirement"

_settings_key = pytest.StashKey[Settings]()
_report_key = pytest.StashKey[ConformanceReport]()
_target_key = pytest.StashKey[LayerTarget]()
_servers_key = pytest.StashKey[contextlib.ExitStack]()
_unsupported_key = pytest.StashKey[list[str]]()
_server_under_test_key = pytest.StashKey[ServerUnderTest]()
FAULT_AREA = "FAULT"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asgi-conformance", "ASGI channel layer conformance")
    group.addoption("--asgi-layer", metavar="DOTTED.PATH",
                    help="run the conformance suite against this layer class or factory")
    group.addoption("--asgi-layer-config", metavar="JSON",
                    help="keyword arguments for the layer, as a JSON object (like CHANNEL_LAYERS CONFIG)")
    group.addoption("--asgi-suite", action="store_true",
                    help="run the suite with the layer from an asgi_layer_factory fixture in conftest.py")
    group.addoption("--asgi-single-process", action="store_true",
                    help="the layer works within one process only: skip the cross-process tests")
    group.addoption("--asgi-unsupported", action="append", default=[], metavar="FEATURE[=REASON]",
                    help="declare a feature the layer does not offer: "
                         + ", ".join(sorted(DECLARABLE_FEATURES)))
    group.addoption("--asgi-strict", action="store_true",
                    help="SHOULD-level deviations count as failures")
    group.addoption("--asgi-report", metavar="PATH", help="write the conformance report as JSON")
    group.addoption("--asgi-requirement", action="append", default=[], metavar="ID",
                    help="run only the tests of this requirement id or area (e.g. CAP-1, GRP); repeatable")
    group.addoption("--asgi-timeout", type=float, default=DEFAULTS.timeout, metavar="SECONDS",
                    help="time limit of one suite test (default %(default)s)")
    group.addoption("--asgi-quiet-period", type=float, default=DEFAULTS.quiet_period, metavar="SECONDS",
                    help="how long the suite watches for a message that must not arrive (default %(default)s)")
    group.addoption("--asgi-delivery-timeout", type=float, default=DEFAULTS.delivery_timeout, metavar="SECONDS",
                    help="how long a message may take to arrive before the test fails (default %(default)s)")
    group.addoption("--asgi-server", metavar="KIND[:N]",
                    help="start a throwaway server for the run: redis, redis:3 (three shards), redis-sentinel "
                         "(a master, a replica, three sentinels), redis-cluster:3 (three masters with a replica "
                         "each), rabbitmq, valkey[:N], postgres or nats")
    group.addoption("--asgi-server-config-key", metavar="KEY",
                    help="config key that receives the server address(es) (default: hosts for redis and valkey, "
                         "url for rabbitmq and postgres, servers for nats)")
    group.addoption("--asgi-faults", action="store_true",
                    help="run the FAULT area: restart, pause and cut off the server --asgi-server started")
    group.addoption("--asgi-fault-timeout", type=float, default=DEFAULTS.fault_timeout, metavar="SECONDS",
                    help="how long one layer call may take during or after a server fault (default %(default)s)")
    group.addoption("--asgi-model-examples", type=int, default=60, metavar="N",
                    help="Hypothesis examples for the model-based state machine (default %(default)s)")


def _active(config: pytest.Config) -> bool:
    return bool(config.getoption("asgi_layer") or config.getoption("asgi_suite"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(id, needs=()): the channel layer requirement a test checks")
    if not _active(config):
        return
    settings = Settings(timeout=config.getoption("asgi_timeout"), quiet_period=config.getoption("asgi_quiet_period"),
                        delivery_timeout=config.getoption("asgi_delivery_timeout"),
                        strict=config.getoption("asgi_strict"), fault_timeout=config.getoption("asgi_fault_timeout"))
    config.stash[_settings_key] = settings
    unsupported = list(config.getoption("asgi_unsupported"))
    if config.getoption("asgi_single_process"):
        unsupported.append("cross-process=declared with --asgi-single-process")

    config.stash[_unsupported_key] = unsupported
    stack = contextlib.ExitStack()
    config.stash[_servers_key] = stack
    layer_path = config.getoption("asgi_layer")
    try:
        server_config = _start_servers(config, stack)
        if layer_path:
            config.stash[_target_key] = load_target(
                layer_path, config.getoption("asgi_layer_config"), unsupported, server_config)
    except TargetError as exc:
        stack.close()
        raise pytest.UsageError(str(exc)) from None
    config.stash[_report_key] = ConformanceReport(layer_path or "asgi_layer_factory fixture", settings.strict)

    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args[:] = [str(p) for p in sorted(SUITE_DIR.glob("test_*.py"))]


def _start_servers(config: pytest.Config, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Start the servers --asgi-server asks for; returns the config entries that point at them."""
    option = config.getoption("asgi_server")
    if not option:
        if config.getoption("asgi_server_config_key"):
            raise TargetError("--asgi-server-config-key names where a server's address goes: "
                              "it needs --asgi-server=redis|redis:N|rabbitmq")
        return {}
    kind, _, count_text = option.partition(":")
    if kind not in SERVER_CONFIG_KEYS:
        raise TargetError(f"--asgi-server={option!r}: kind must be one of {', '.join(SERVER_CONFIG_KEYS)}")
    try:
        count = int(count_text or 1)
    except ValueError:
        raise TargetError(f"--asgi-server={option!r}: the shard count after ':' must be a number") from None
    from . import servers  # imported only when asked: it pulls in process-management libraries

    try:
        started = stack.enter_context(servers.servers_for(kind, count))
    except servers.ServerError as exc:
        raise TargetError(f"--asgi-server={option}: {exc}") from None
    key = config.getoption("asgi_server_config_key") or SERVER_CONFIG_KEYS[kind]
    as_list = kind in LISTED_KINDS or count > 1
    config.stash[_server_under_test_key] = ServerUnderTest(started, kind, key, as_list)
    entries = started.config_entries  # URLs, or a kind's own form (Sentinel: see servers/sentinel.py)
    return {key: entries if as_list else entries[0]}


def pytest_report_header(config: pytest.Config) -> str | None:
    """Which servers --asgi-server started, and where: a local binary or a container."""
    server = config.stash.get(_server_under_test_key, None)
    return None if server is None else f"asgi-conformance servers: {server.servers.describe()}"


def pytest_unconfigure(config: pytest.Config) -> None:
    stack = config.stash.get(_servers_key, None)
    if stack is not None:
        stack.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _active(config):
        return
    _select_requirements(config, items)
    for item in items:  # JUnit XML (--junitxml) writes these as each testcase's <properties>
        item.user_properties.extend((REQUIREMENT_PROPERTY, rid) for rid in _requirement_ids(item))
    # Faults last: a restart or a pause must not leave other areas judging a layer still recovering.
    items.sort(key=lambda item: any(rid.startswith(FAULT_AREA + "-") for rid in _requirement_ids(item)))


def _select_requirements(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = config.getoption("asgi_requirement")
    if not wanted:
        return
    for rid in wanted:
        if rid not in requirements.REQUIREMENTS and rid not in requirements.AREAS:
            raise pytest.UsageError(f"--asgi-requirement={rid!r}: no such requirement id or area")
    selected, deselected = [], []
    for item in items:
        ids = _requirement_ids(item)
        if any(rid in wanted or rid.split("-")[0] in wanted for rid in ids):
            selected.append(item)
        else:
            deselected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


def _requirement_ids(item: pytest.Item) -> list[str]:
    return [mark.args[0] for mark in item.iter_markers(MARKER)]


def _needs(item: pytest.Item) -> list[str]:
    return [need for mark in item.iter_markers(MARKER) for need in mark.kwargs.get("needs", ())]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """Put the run's settings in force for the whole of one test: set-up, call and teardown."""
    settings = item.config.stash.get(_settings_key, None)
    if settings is None:
        return (yield)
    with in_force(settings):
        return (yield)


# --- fixtures ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def asgi_layer_factory(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``factory(**overrides) -> layer``. Override it in conftest.py for custom setup."""
    target = request.config.stash.get(_target_key, None)
    if target is None:
        raise pytest.UsageError(
            "no layer to test: pass --asgi-layer=package.module.LayerClass, "
            "or define an asgi_layer_factory fixture in conftest.py and pass --asgi-suite")
    return target.build


@pytest.fixture(scope="session")
def asgi_target(request: pytest.FixtureRequest, asgi_layer_factory: Callable[..., Any]) -> LayerTarget:
    """What the suite knows about the layer: config, declared features, extensions, module."""
    target = request.config.stash.get(_target_key, None)
    if target is not None and target.build == asgi_layer_factory:
        return target
    # A factory from conftest.py: learn the layer's declarations from one instance.
    declared = request.config.stash.get(_unsupported_key, [])
    try:
        return inspect_layer(LayerTarget(factory=asgi_layer_factory, unsupported=parse_unsupported(declared)))
    except TargetError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture
def layers(asgi_layer_factory: Callable[..., Any]) -> Iterator[LayerPool]:
    """A :class:`LayerPool` for this test: ``layers.make(capacity=3)`` builds a layer."""
    pool = LayerPool(asgi_layer_factory)
    yield pool
    if not pool.closed:  # a sync test, or one that never ran its coroutine
        asyncio.run(pool.aclose())


@pytest.fixture
def layer(layers: LayerPool) -> LayerToBuild:
    """One layer with the configured settings, built inside the test's own event loop."""
    return LayerToBuild(layers)


@pytest.fixture
def asgi_peers(asgi_target: LayerTarget) -> Iterator[PeerGroup]:
    """``asgi_peers.start(**overrides)`` starts a peer process building the same layer (XP-*);
    every peer is ended when the test ends, whether it passed, failed or timed out."""
    if asgi_target.dotted_path is None:
        pytest.skip("cross-process tests need --asgi-layer: a peer process builds the layer from its dotted path")
    from .peer import PeerGroup  # imported only by the tests that start peers

    peers = PeerGroup(asgi_target.dotted_path, asgi_target.config,
                      call_timeout=max(10.0, 2 * current_settings().delivery_timeout))
    try:
        yield peers
    finally:
        peers.close()


@pytest.fixture
def asgi_server(request: pytest.FixtureRequest) -> ServerUnderTest:
    """The servers the plugin started, to fault (FAULT-*); the test is skipped, saying which
    option is missing, unless ``--asgi-server`` started them and ``--asgi-faults`` asks for faults."""
    config = request.config
    missing = []
    if not config.getoption("asgi_faults"):
        missing.append("--asgi-faults (the FAULT area restarts, pauses and cuts off the server)")
    server = config.stash.get(_server_under_test_key, None)
    if server is None:
        missing.append("--asgi-server=KIND (the plugin must start the server to fault it; "
                       "a layer that needs no server, like in-memory or IPC, has none to fault)")
    if missing:
        pytest.skip("FAULT-* run only with " + " and ".join(missing))
    assert server is not None
    return server


@pytest.fixture(autouse=True)
def _asgi_skip_unsupported(request: pytest.FixtureRequest) -> None:
    """Skip a suite test whose requirement needs a feature the layer says it lacks."""
    needs = _needs(request.node)
    if needs:
        require(request.getfixturevalue("asgi_target"), *needs)


# --- outcomes and the report ---------------------------------------------------------------

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
        item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Turn a missed SHOULD into a deviation (outside strict mode) and record the outcome."""
    try:
        report = yield
    except SystemError:
        # CPython 3.11's "AST constructor recursion depth mismatch" can strike while pytest
        # parses source to show a failure; one layer's failure must not end the whole run.
        report = _report_with_native_traceback(item, call)
    ids = _requirement_ids(item)
    if not ids:
        return report
    settings = item.config.stash.get(_settings_key, DEFAULTS)
    if (report.when == "call" and report.failed and not settings.strict
            and all(requirements.get(rid).level == requirements.SHOULD for rid in ids)):
        detail = f"DEVIATION from SHOULD {', '.join(ids)}: {_failure_text(report)}"
        report.user_properties.append((DEVIATION_PROPERTY, detail))
        report.outcome = "skipped"
        report.wasxfail = detail  # pytest's own line for it: an xfail, with the reason
    _record(item.config, ids, report)
    return report


def _report_with_native_traceback(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    style = item.config.option.tbstyle
    item.config.option.tbstyle = "native"
    try:
        return pytest.TestReport.from_item_and_call(item, call)
    finally:
        item.config.option.tbstyle = style


def _failure_text(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    return str(report.longrepr).strip().splitlines()[-1] if report.longrepr else ""


def _skip_text(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return _failure_text(report)


def _deviation(report: pytest.TestReport) -> str | None:
    """The deviation detail the call's report carries, if the test missed a SHOULD."""
    return next((str(value) for name, value in report.user_properties if name == DEVIATION_PROPERTY), None)


def _record(config: pytest.Config, ids: list[str], report: pytest.TestReport) -> None:
    """Feed one phase's outcome into the report: the call, a skip at setup, or any error."""
    conformance = config.stash.get(_report_key, None)
    if conformance is None:
        return
    if report.when == "call":
        deviation = _deviation(report)
        if deviation is not None:
            outcome = TestOutcome(report.nodeid, DEVIATION, deviation)
        elif report.passed:
            outcome = TestOutcome(report.nodeid, PASS)
        elif report.skipped:
            outcome = TestOutcome(report.nodeid, SKIP, _skip_text(report))
        else:
            outcome = TestOutcome(report.nodeid, FAIL, _failure_text(report))
    elif report.when == "setup" and report.skipped:
        outcome = TestOutcome(report.nodeid, SKIP, _skip_text(report))
    elif report.failed:
        outcome = TestOutcome(report.nodeid, FAIL, f"error in {report.when}: {_failure_text(report)}")
    else:
        return
    for rid in ids:
        conformance.record(rid, outcome)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    conformance = config.stash.get(_report_key, None)
    if conformance is None:
        return
    terminalreporter.section("ASGI conformance report")
    for line in conformance.render_lines(width=config.get_terminal_writer().fullwidth):
        terminalreporter.write_line(line.text, **STATUS_MARKUP.get(line.status, {}))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    conformance = config.stash.get(_report_key, None)
    if conformance is None:
        return
    path = config.getoption("asgi_report")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(conformance.to_json())
    if conformance.failed and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
