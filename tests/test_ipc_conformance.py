"""The whole conformance suite, strict, against IPCChannelLayer: every requirement must PASS,
the cross-process ones (XP-*) included (the suite's peer process meets us through the prefix)."""

from __future__ import annotations

import pytest

from .ipc_helpers import remove_segment, unique_prefix
from .suite_runner import run_suite

pytestmark = pytest.mark.timeout(900)


def test_ipc_layer_passes_the_strict_suite(pytester):
    prefix = unique_prefix("suite")
    try:
        run = run_suite(pytester, "reference_layers.ipc.IPCChannelLayer", config={"prefix": prefix})
    finally:
        remove_segment(prefix)
    not_passed = {rid: status for rid, status in run.statuses().items() if status != "PASS"}
    assert not not_passed, f"{not_passed}\n{run.with_status('FAIL')}\n" + "\n".join(run.result.outlines[-30:])
    assert any(rid.startswith("XP-") for rid in run.statuses())
    assert run.result.ret == 0
