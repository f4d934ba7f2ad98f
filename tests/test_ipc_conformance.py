"""The whole conformance suite, strict, against IPCChannelLayer: every requirement must PASS,
the cross-process ones (XP-*) included (the suite's peer process meets us through the prefix).

Twice: as installed here (the C hot path, receives that spin before they sleep), and as
where there is no compiler, with the spin off (pure Python, every wait a kernel wake-up)."""

from __future__ import annotations

import pytest

from reference_layers.ipc import native

from .ipc_helpers import NO_C_HOT_PATH, remove_segment, unique_prefix
from .suite_runner import run_suite

pytestmark = pytest.mark.timeout(900)


@pytest.mark.parametrize("variant", ["c-and-spin", "python-no-spin"])
def test_ipc_layer_passes_the_strict_suite(pytester, monkeypatch, variant):
    prefix = unique_prefix("suite")
    config = {"prefix": prefix}
    if variant == "python-no-spin":
        monkeypatch.setenv("ASGI_IPC_PURE_PYTHON", "1")  # the suite and its peer processes inherit it
        config["receive_spin"] = 0
    elif not native.AVAILABLE:
        pytest.skip(NO_C_HOT_PATH)
    try:
        run = run_suite(pytester, "reference_layers.ipc.IPCChannelLayer", config=config)
    finally:
        remove_segment(prefix)
    not_passed = run.not_passed_outside_the_fault_area()
    assert not not_passed, f"{not_passed}\n" + "\n".join(run.result.outlines[-30:])
    assert run.fault_area_skipped_saying_why(), run.with_status("SKIP")  # no server to fault
    assert any(rid.startswith("XP-") for rid in run.statuses())
    assert run.result.ret == 0
