"""The peer process and its protocol, tested with real peer processes.

Most tests drive a peer on our in-memory layer, where every command can be checked inside
the peer itself; the last ones run the XP suite through pytest as a user would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
import threading
from pathlib import Path

import pytest

from asgi_conformance.peer import PeerCommandError, PeerDied, PeerGroup, PeerTimeout
from asgi_conformance.requirements import REQUIREMENTS
from reference_layers.inmemory import InMemoryChannelLayer
from tests.suite_runner import run_suite

INMEMORY = "reference_layers.inmemory.InMemoryChannelLayer"


class NoisyLayer(InMemoryChannelLayer):
    """Prints to stdout at every turn, at Python and at file-descriptor level."""

    def __init__(self, **config):
        print("noisy: building")
        os.write(1, b"noisy: raw write to fd 1\n")
        super().__init__(**config)

    async def send(self, channel, message):
        print("noisy: send to", channel, flush=True)
        os.write(1, b"\x00\x00\x00\x05hello")  # shaped like a frame, to garble a shared pipe
        await super().send(channel, message)


@pytest.fixture
def peers():
    group = PeerGroup(INMEMORY, {}, call_timeout=10)
    yield group
    group.close()


def _gone(pid: int) -> bool:
    """True once the process no longer exists (not even as a zombie)."""
    return not Path(f"/proc/{pid}").exists()


def test_channel_commands_run_in_the_peer(peers):
    peer = peers.start()
    channel = peer.new_channel()
    assert "!" in channel
    assert peer.new_channel("custom.").startswith("custom.")
    message = {"type": "peer.test", "blob": b"\x00\xff", "items": [1, 2.5, None, True]}
    peer.send(channel, message)
    assert peer.receive(channel, timeout=5) == message
    assert peer.receive(channel, timeout=0.2) is None
    assert peer.ping() == peer.pid


def test_group_flush_and_send_many_commands_run_in_the_peer(peers):
    peer = peers.start()
    member = peer.new_channel()
    peer.group_add("peer-test-group", member)
    peer.group_send("peer-test-group", {"type": "to.group"})
    assert peer.receive(member, timeout=5) == {"type": "to.group"}
    peer.group_discard("peer-test-group", member)
    peer.group_send("peer-test-group", {"type": "to.nobody"})
    assert peer.receive(member, timeout=0.2) is None

    assert peer.send_many("peer-test.normal", 5) == 5
    got = [peer.receive("peer-test.normal", timeout=5) for _ in range(5)]
    assert got == [{"type": "xp.seq", "sender": peer.name, "seq": seq} for seq in range(5)]

    peer.send("peer-test.normal", {"type": "queued"})
    peer.flush()
    assert peer.receive("peer-test.normal", timeout=0.2) is None


def test_async_twins_and_overlapping_calls(peers):
    """A waiting receive does not hold up the peer's next command."""
    async def scenario():
        peer = await peers.astart()
        channel = await peer.anew_channel()
        waiting = asyncio.ensure_future(peer.areceive(channel, timeout=10))
        await peer.asend(channel, {"type": "late"})
        assert await waiting == {"type": "late"}
        assert await peer.asend_many("peer-test.async", 2) == 2
        assert await peer.areceive("peer-test.async") == {"type": "xp.seq", "sender": peer.name, "seq": 0}

    asyncio.run(scenario())


def test_peers_share_nothing_on_the_in_memory_layer(peers):
    """Each peer is its own process: the in-memory layer of one is invisible to another."""
    first, second = peers.start_many(2)
    assert first.pid != second.pid
    first.send("peer-test.private", {"type": "mine"})
    assert second.receive("peer-test.private", timeout=0.3) is None
    assert first.receive("peer-test.private", timeout=5) == {"type": "mine"}


def test_a_remote_exception_names_the_command_and_the_remote_error(peers):
    peer = peers.start()
    with pytest.raises(PeerCommandError) as caught:
        peer.send("bad name with spaces", {"type": "x"})
    text = str(caught.value)
    assert "send(channel='bad name with spaces'" in text
    assert "TypeError" in text and "remote traceback" in text
    assert caught.value.remote_type == "builtins.TypeError"
    assert "TypeError" in caught.value.remote_mro
    assert peer.ping() == peer.pid  # the peer survives its command's failure


def test_an_unknown_command_is_a_clear_error(peers):
    peer = peers.start()
    with pytest.raises(PeerCommandError, match="unknown peer command 'dance'"):
        peer.call("dance")


def test_a_layer_that_cannot_be_built_fails_start_clearly_and_the_peer_is_reaped(peers):
    with pytest.raises(PeerCommandError) as caught:
        peers.start(no_such_option=1)
    assert "start(dotted_path='reference_layers.inmemory.InMemoryChannelLayer'" in str(caught.value)
    assert "LayerConfigError" in str(caught.value) and "no_such_option" in str(caught.value)
    assert peers.peers[-1].returncode is not None


def test_an_unimportable_layer_fails_start_clearly():
    group = PeerGroup("no_such_package.module.Layer", {}, call_timeout=10)
    try:
        with pytest.raises(PeerCommandError, match="ModuleNotFoundError.*no_such_package"):
            group.start()
    finally:
        group.close()


def test_prints_in_the_peer_do_not_corrupt_the_pipe():
    group = PeerGroup("tests.test_peer.NoisyLayer", {}, call_timeout=10)
    try:
        peer = group.start()
        channel = peer.new_channel()
        for index in range(3):
            peer.send(channel, {"type": "quiet", "index": index})
        assert [peer.receive(channel, timeout=5)["index"] for _ in range(3)] == [0, 1, 2]
        peer.close()
        assert "noisy: building" in peer.stderr_tail()
        assert "noisy: send to" in peer.stderr_tail()
    finally:
        group.close()


def test_a_killed_peer_is_reaped_and_later_calls_say_it_died(peers):
    peer = peers.start()
    assert peer.kill() == -signal.SIGKILL
    assert _gone(peer.pid)
    with pytest.raises(PeerDied, match="killed by SIGKILL"):
        peer.ping()


def test_a_call_pending_when_the_peer_dies_fails_at_once_not_at_its_timeout(peers):
    peer = peers.start()
    channel = peer.new_channel()
    outcome = {}

    def wait_forever():
        try:
            peer.call("receive", {"channel": channel, "timeout": None}, timeout=120)
        except Exception as exc:  # noqa: BLE001 - inspected below
            outcome["error"] = exc

    waiter = threading.Thread(target=wait_forever)
    waiter.start()
    assert peer.ping() == peer.pid  # the receive request is in the peer before we kill it
    os.kill(peer.pid, signal.SIGKILL)
    waiter.join(60)
    assert not waiter.is_alive()
    assert isinstance(outcome["error"], PeerDied), outcome
    assert "receive(" in str(outcome["error"]) and "SIGKILL" in str(outcome["error"])


def test_a_hung_call_times_out_clearly_and_the_peer_is_killed(peers):
    peer = peers.start()
    channel = peer.new_channel()
    with pytest.raises(PeerTimeout) as caught:
        peer.call("receive", {"channel": channel, "timeout": None}, timeout=0.5)
    assert f"did not answer receive(channel={channel!r}" in str(caught.value)
    assert "within 0.5 s" in str(caught.value) and "killed" in str(caught.value)
    assert peer.returncode == -signal.SIGKILL
    assert _gone(peer.pid)


def test_a_hung_async_call_times_out_clearly(peers):
    async def scenario():
        peer = await peers.astart()
        with pytest.raises(PeerTimeout, match="did not answer receive"):
            await peer.acall("receive", {"channel": "peer-test.never", "timeout": None}, timeout=0.5)
        return peer

    peer = asyncio.run(scenario())
    assert peer.returncode == -signal.SIGKILL


def test_traffic_runs_on_after_its_answer_until_the_peer_is_killed(peers):
    peer = peers.start()
    started = peer.traffic(channel="peer-test.traffic", group="peer-test-traffic", warmup=5)
    assert started["iterations"] == 5 and "!" in started["channel"]
    for _ in range(10_000):  # each status call is a round trip the traffic loop runs through
        status = peer.traffic_status()
        if status["iterations"] > 5:
            break
    assert status["iterations"] > 5 and status["error"] is None, status
    assert status["missed"] == 0, status  # every round's messages came back: real traffic
    assert peer.kill() == -signal.SIGKILL


def test_closing_a_group_ends_every_peer(peers):
    running = peers.start_many(2)
    peers.start().kill()
    peers.close()
    for peer in peers.peers:
        assert peer.returncode is not None
        assert _gone(peer.pid)
    assert {peer.returncode for peer in running} == {0}  # ended politely, not killed


# --- through pytest, as a user runs it -------------------------------------------------------

PEER_PIDS_TEST = """
    import asyncio
    from pathlib import Path
    from asgi_conformance.spec import requirement

    def _note(peers):
        Path("pids.txt").write_text(" ".join(str(p.pid) for p in peers))

    def test_failing_with_peers(asgi_peers):
        _note(asgi_peers.start_many(2))
        assert False, "this test fails on purpose"

    @requirement("XP-1")
    async def test_timing_out_with_peers(asgi_peers):
        _note(await asgi_peers.astart_many(2))
        await asyncio.sleep(60)

    def test_the_peers_are_gone():
        # Runs in the same pytest process: a peer left running, or not reaped, shows in /proc.
        pids = [int(pid) for pid in Path("pids.txt").read_text().split()]
        assert len(pids) == 2
        assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
"""


@pytest.mark.parametrize("test_name", ["test_failing_with_peers", "test_timing_out_with_peers"])
def test_the_fixture_leaves_no_peer_behind_when_a_test_fails_or_times_out(pytester, test_name):
    pytester.makepyfile(test_peers_left=textwrap.dedent(PEER_PIDS_TEST))
    result = pytester.runpytest_subprocess(
        f"--asgi-layer={INMEMORY}", "--asgi-timeout=2", "-p", "no:cacheprovider",
        f"test_peers_left.py::{test_name}", "test_peers_left.py::test_the_peers_are_gone", timeout=120)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([f"FAILED*{test_name}*"])


def test_xp_tests_skip_with_the_reason_for_a_single_process_layer(pytester):
    run = run_suite(pytester, INMEMORY, "--asgi-single-process", "--asgi-requirement=XP")
    statuses = {rid: status for rid, status in run.statuses().items() if rid.startswith("XP-")}
    assert statuses == {rid: "SKIP" for rid in REQUIREMENTS if rid.startswith("XP-")}
    for details in run.with_status("SKIP").values():
        assert any("--asgi-single-process" in detail for detail in details), details


CROSS_PROCESS_FACTORY = """
    import pytest
    from reference_layers.inmemory import InMemoryChannelLayer

    class ClaimsCrossProcess(InMemoryChannelLayer):
        conformance_unsupported = {}

    @pytest.fixture(scope="session")
    def asgi_layer_factory():
        return lambda **overrides: ClaimsCrossProcess(**overrides)
"""


def test_xp_tests_skip_with_the_reason_when_the_layer_has_no_dotted_path(pytester):
    pytester.makeconftest(textwrap.dedent(CROSS_PROCESS_FACTORY))
    result = pytester.runpytest_subprocess(
        "--asgi-suite", "--asgi-requirement=XP", "-p", "no:cacheprovider", "-rs", timeout=120)
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) >= 5 and not outcomes.get("passed") and not outcomes.get("failed")
    result.stdout.fnmatch_lines(["*cross-process tests need --asgi-layer: a peer process builds the layer*"])


@pytest.mark.redis
def test_xp_suite_against_channels_redis(pytester):
    """The XP tests work across real processes. channels_redis passes all but XP-4: a message
    it has read ahead into a process-local buffer survives a flush made in another process."""
    run = run_suite(pytester, "channels_redis.core.RedisChannelLayer", "--asgi-server=redis",
                    "--asgi-requirement=XP")
    statuses = {rid: status for rid, status in run.statuses().items() if rid.startswith("XP-")}
    assert statuses == {"XP-1": "PASS", "XP-2": "PASS", "XP-3": "PASS", "XP-4": "FAIL", "XP-5": "PASS"}
    assert any("sent before the flush" in detail for detail in run.with_status("FAIL")["XP-4"])
