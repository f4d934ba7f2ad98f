"""MODEL-1 must catch a bug that only a sequence of operations shows, and pass a correct layer."""

from pathlib import Path

from tests.suite_runner import run_suite

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_model_fails_a_layer_that_reorders_after_channel_full(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the suite's subprocess imports tests.broken_for_model
    run = run_suite(pytester, "tests.broken_for_model.ReordersAfterFull",
                    "--asgi-single-process", "--asgi-requirement=MODEL-1")
    assert run.status("MODEL-1") == "FAIL"
    details = " ".join(run.with_status("FAIL")["MODEL-1"])
    assert "ModelMismatch" in details and "receive(" in details, details
    assert run.result.ret != 0


def test_model_passes_the_correct_in_memory_layer(pytester):
    run = run_suite(pytester, "reference_layers.inmemory.InMemoryChannelLayer",
                    "--asgi-single-process", "--asgi-requirement=MODEL-1")
    assert run.status("MODEL-1") == "PASS", run.result.outlines[-40:]
    assert run.result.ret == 0
