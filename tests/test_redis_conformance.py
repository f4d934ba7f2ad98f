"""The whole suite, strict, against our Redis layer: on one server and on three real shards."""

import pytest

from asgi_conformance.requirements import REQUIREMENTS
from tests.suite_runner import run_suite

OURS = "reference_layers.redis.RedisChannelLayer"


def _assert_every_requirement_passes(run):
    assert run.result.ret == 0, "\n".join(run.result.outlines[-60:])
    statuses = run.statuses()
    assert set(statuses) == set(REQUIREMENTS)
    not_passed = run.not_passed_outside_the_fault_area()
    assert not not_passed, f"requirements not passed: {not_passed}"
    assert run.fault_area_skipped_saying_why(), run.with_status("SKIP")  # tests/test_fault_area.py runs it


@pytest.mark.timeout(900)
def test_our_redis_layer_passes_every_requirement_on_one_server(pytester, redis_urls):
    run = run_suite(pytester, OURS, config={"hosts": redis_urls}, timeout=800)
    _assert_every_requirement_passes(run)


@pytest.mark.timeout(900)
def test_our_redis_layer_passes_every_requirement_on_three_shards(pytester, redis_shard_urls):
    assert len(redis_shard_urls) == 3
    run = run_suite(pytester, OURS, config={"hosts": redis_shard_urls}, timeout=800)
    _assert_every_requirement_passes(run)
