"""The whole suite against our RabbitMQ layer on a real broker, in strict mode.

(channels_rabbitmq, the public peer, is run in tests/test_public_layers.py.)
"""

from __future__ import annotations

import json

import pytest

from tests.suite_runner import run_suite

OURS = "reference_layers.rabbitmq.RabbitMQChannelLayer"


@pytest.mark.timeout(1800)
def test_our_rabbitmq_layer_passes_the_whole_suite_in_strict_mode(pytester, rabbitmq_url):
    run = run_suite(pytester, OURS, config={"url": rabbitmq_url}, strict=True, timeout=1500)

    not_passed = run.not_passed_outside_the_fault_area()
    assert not not_passed, f"requirements not passed: {json.dumps(not_passed, indent=1)}"
    assert run.fault_area_skipped_saying_why(), run.with_status("SKIP")  # tests/test_fault_area.py runs it
    assert run.result.ret == pytest.ExitCode.OK
