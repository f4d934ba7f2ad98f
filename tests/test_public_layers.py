"""The suite against the public layers from PyPI, on real servers: findings, not our code.

These tests assert that the suite ran to the end against each layer and produced a verdict
for every requirement, never that the layer passes: a FAIL there is a finding about that
layer. Default (non-strict) mode, so a missed SHOULD shows as DEVIATION and a missed MUST as
FAIL. Each summary is printed and written to ``<pytest basetemp>/public-layer-findings/``.
Only what a layer cannot do by design is declared, as its user would declare it. A message may
take 1 s to arrive, not the suite's default 5 s: every server here is local and delivers in
milliseconds, and each test failing for a message that never comes (a finding) would otherwise
wait out the longer limit (pub/sub's run took 72 s, most of it waiting).
"""

from __future__ import annotations

import json

import pytest

from asgi_conformance.requirements import REQUIREMENTS
from tests.server_marks import needing
from tests.suite_runner import run_suite

PUBSUB_DECLARES = [
    "--asgi-unsupported=backlog=Redis Pub/Sub reaches only receivers already subscribed",
    "--asgi-unsupported=capacity=Redis Pub/Sub queues nothing, so nothing fills up",
    "--asgi-unsupported=expiry=Redis Pub/Sub stores no message that could expire",
]
RABBITMQ_DECLARES = [
    "--asgi-unsupported=normal-channels=channels_rabbitmq refuses normal channels by design",
    "--asgi-unsupported=capacity=channels_rabbitmq sizes queues with local_capacity/remote_capacity, "
    "not the capacity keyword the suite sets",
]

# name: (dotted path, server fixture or None, config key, extra arguments)
LAYERS = {
    "channels-inmemory": ("channels.layers.InMemoryChannelLayer", None, None, ["--asgi-single-process"]),
    # On three shards it fails most requirements (see docs/conformance.md, made by
    # `python -m tools.matrix`); one shard keeps this CI gate short.
    "channels_redis": ("channels_redis.core.RedisChannelLayer", "redis_urls", "hosts", []),
    "channels_redis-pubsub": ("channels_redis.pubsub.RedisPubSubChannelLayer", "redis_urls", "hosts", PUBSUB_DECLARES),
    "channels_rabbitmq": ("channels_rabbitmq.core.RabbitmqChannelLayer", "rabbitmq_url", "host", RABBITMQ_DECLARES),
}
DELIVERY_TIMEOUT = 1.0  # seconds a message may take to arrive (see the docstring)
RAN = {"PASS", "FAIL", "DEVIATION"}  # verdicts that needed the layer to do something


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", [needing(name, fixture) for name, (_, fixture, _, _) in LAYERS.items()])
def test_the_suite_runs_to_the_end_and_records_its_findings(pytester, request, tmp_path_factory, name):
    dotted, server_fixture, key, extra = LAYERS[name]
    config = {key: request.getfixturevalue(server_fixture)} if server_fixture else None
    run = run_suite(pytester, dotted, *extra, f"--asgi-delivery-timeout={DELIVERY_TIMEOUT}", config=config,
                    strict=False, timeout=1500)

    assert run.result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), run.result.outlines[-30:]
    statuses = run.statuses()
    assert set(statuses) == set(REQUIREMENTS)
    assert "NOT RUN" not in statuses.values(), statuses
    assert RAN & set(statuses.values()), f"no requirement was exercised against the layer: {statuses}"
    # The exit status is the CI gate's: non-zero exactly when a requirement FAILs.
    assert (run.result.ret == pytest.ExitCode.TESTS_FAILED) == ("FAIL" in statuses.values())

    findings = tmp_path_factory.getbasetemp() / "public-layer-findings"
    findings.mkdir(parents=True, exist_ok=True)
    summary = _summarise(name, dotted, run)
    (findings / f"{name}.json").write_text(json.dumps(run.report, indent=2))
    (findings / f"{name}.txt").write_text(summary)
    print(summary)


def _summarise(name: str, dotted: str, run) -> str:
    statuses = run.statuses()
    counts = {status: list(statuses.values()).count(status) for status in sorted(set(statuses.values()))}
    lines = [f"== {name} ({dotted}): {counts}"]
    for status in ("FAIL", "DEVIATION", "SKIP"):
        for rid, details in run.with_status(status).items():
            lines.append(f"{status:9} {rid}: " + (" || ".join(details) if details else ""))
    return "\n".join(lines) + "\n"
