"""IPCChannelLayer specifics the conformance suite does not cover: permissions, the cleanup
command, a full segment, prefixes keeping projects apart, config errors, last-close removal."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from reference_layers.base import ChannelFull, LayerConfigError
from reference_layers.ipc import IPCChannelLayer, SegmentFull
from reference_layers.ipc.consistency import check
from reference_layers.ipc.statistics import backlogs
from tests.helpers import run

from .ipc_helpers import REPO, Child, remove_segment, shm_path, unique_prefix

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def prefix():
    name = unique_prefix()
    yield name
    remove_segment(name)


def cleanup_command(*args):
    return subprocess.run([sys.executable, "-m", "reference_layers.ipc", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=60)


def test_segment_is_created_0600_even_with_a_permissive_umask(prefix):
    old = os.umask(0)
    try:
        layer = IPCChannelLayer(prefix=prefix)
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(shm_path(prefix).stat().st_mode) == 0o600
    finally:
        layer.close_sync()


def test_last_close_removes_an_empty_segment_and_keeps_one_with_messages(prefix):
    layer = IPCChannelLayer(prefix=prefix)
    other = IPCChannelLayer(prefix=prefix)
    layer.close_sync()
    assert shm_path(prefix).exists(), "removed while another layer of this process still used it"
    other.close_sync()
    assert not shm_path(prefix).exists()

    layer = IPCChannelLayer(prefix=prefix)
    run(layer.send("kept.channel", {"type": "test.kept"}))
    layer.close_sync()
    assert shm_path(prefix).exists(), "a segment holding messages was removed"
    layer = IPCChannelLayer(prefix=prefix)
    assert run(layer.receive("kept.channel")) == {"type": "test.kept"}
    layer.close_sync()
    assert not shm_path(prefix).exists()


def test_cleanup_removes_a_crashed_deployments_segment_but_not_one_in_use(prefix):
    layer = IPCChannelLayer(prefix=prefix)
    run(layer.send("stale.channel", {"type": "test.stale"}))
    waiting = Child(prefix, "wait", "other.channel")  # a live process attached to it
    waiting.wait_paused()
    layer.close_sync()
    refused = cleanup_command("--cleanup", prefix)
    assert refused.returncode == 1 and "in use" in refused.stdout
    assert shm_path(prefix).exists()
    waiting.kill()  # the deployment crashes: nobody attached, messages left behind
    listed = cleanup_command("--list")
    assert f"/asgi-ipc.{prefix}\tunused" in listed.stdout
    done = cleanup_command("--cleanup", prefix)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed" in done.stdout
    assert not shm_path(prefix).exists()


def as_another_user(function):
    """What ``function`` prints when run by a forked child that has dropped root for nobody
    (the interpreter is loaded already, so nothing must be read from root's folders)."""
    from reference_layers.ipc import __main__ as cli  # imported before the fork

    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            with open(writer, "w") as printed:
                sys.stdout = printed  # pytest's capture stands where fd 1 would be
                code = function(cli)
        finally:
            os._exit(code or 0)
    os.close(writer)
    with os.fdopen(reader) as output:
        printed = output.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), printed


@pytest.mark.skipif(os.geteuid() != 0, reason="making another user's segment needs root")
def test_the_cleanup_command_passes_over_another_users_segment_without_crashing(prefix):
    layer = IPCChannelLayer(prefix=prefix)  # root's segment, mode 0600: nobody may not open it
    try:
        code, printed = as_another_user(lambda cli: cli.main(["--list"]))
        assert code == 0, printed
        assert f"/asgi-ipc.{prefix}\tno permission" in printed
        code, printed = as_another_user(lambda cli: cli.main(["--cleanup", prefix]))
        assert code == 1 and "not removed" in printed, printed
        assert shm_path(prefix).exists()
    finally:
        layer.close_sync()


def test_check_command_reports_a_consistent_segment(prefix):
    layer = IPCChannelLayer(prefix=prefix)
    run(layer.send("checked.channel", {"type": "test.checked"}))
    result = cleanup_command("--check", prefix)
    assert result.returncode == 0 and "consistent" in result.stdout, result.stdout + result.stderr
    layer.close_sync()


def test_stats_command_prints_what_waits_on_a_segment(prefix):
    layer = IPCChannelLayer(prefix=prefix, expiry=30)
    for n in range(2):
        run(layer.send("stats.cli", {"type": "test.stats", "n": n}))
    every = cleanup_command("--stats", prefix, "--expiry", "30")
    named = cleanup_command("--stats", prefix, "--channel", "stats.cli", "--channel", "stats.none")
    missing = cleanup_command("--stats", prefix + "-missing")
    run(layer.flush())
    layer.close_sync()
    assert every.returncode == 0, every.stdout + every.stderr
    answer = json.loads(every.stdout)
    assert list(answer["channels"]) == ["stats.cli"] and answer["channels"]["stats.cli"]["waiting"] == 2
    assert 0 <= answer["channels"]["stats.cli"]["oldest_age"] < 30
    assert answer["connections"] == {} and answer["channel_full_raised"] == 0  # no server; a fresh process
    assert json.loads(named.stdout)["channels"]["stats.none"] == {"waiting": 0, "oldest_age": None}
    assert missing.returncode == 2 and "no shared segment" in missing.stderr


def test_statistics_counts_expired_messages_out_without_dropping_them(prefix):
    layer = IPCChannelLayer(prefix=prefix, expiry=30)
    run(layer.send("stats.old", {"type": "test.old"}))
    run(layer.send("stats.old", {"type": "test.new"}))
    segment = layer._current().segment  # the reader alone, at a time past the expiry: no sleeping
    now = time.monotonic()  # the clock the segment's expiry stamps are on
    assert backlogs(segment, [b"stats.old"], now)[b"stats.old"].waiting == 2
    assert backlogs(segment, None, now + 31) == {}  # every channel holding an unexpired message: none
    assert backlogs(segment, [b"stats.old"], now + 31)[b"stats.old"].waiting == 0
    assert run(layer.statistics(["stats.old"])).channels["stats.old"].waiting == 2  # still there
    run(layer.flush())
    layer.close_sync()


def test_a_full_segment_raises_channel_full_and_stays_consistent(prefix):
    layer = IPCChannelLayer(prefix=prefix, segment_size=1024 * 1024, capacity=1000,
                            message_size_limit=300_000)
    blob = os.urandom(200_000)
    sent = 0
    with pytest.raises(ChannelFull) as caught:
        for sent in range(100):
            run(layer.send("big.channel", {"type": "test.big", "n": sent, "blob": blob}))
    assert isinstance(caught.value, SegmentFull)
    assert "segment" in str(caught.value) and "big.channel" in str(caught.value)
    assert sent >= 2
    counted = run(layer.statistics(["big.channel"]))
    assert counted.channel_full_raised == 1 and counted.channels["big.channel"].waiting == sent
    assert check(layer._current().segment) == []
    for index in range(sent):  # everything that was accepted arrives whole
        message = run(layer.receive("big.channel"))
        assert message["n"] == index and message["blob"] == blob
    run(layer.send("big.channel", {"type": "test.big", "n": -1, "blob": blob}))  # room again
    assert run(layer.receive("big.channel"))["n"] == -1
    assert check(layer._current().segment) == []
    layer.close_sync()


def test_two_prefixes_stay_apart():
    first, second = unique_prefix("a"), unique_prefix("b")
    layer_a, layer_b = IPCChannelLayer(prefix=first), IPCChannelLayer(prefix=second)

    async def scenario():
        await layer_a.send("shared.name", {"type": "test.for-a"})
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer_b.receive("shared.name"), 0.3)
        return await layer_a.receive("shared.name")

    try:
        assert run(scenario()) == {"type": "test.for-a"}
    finally:
        layer_a.close_sync()
        layer_b.close_sync()
        remove_segment(first)
        remove_segment(second)


@pytest.mark.parametrize("config, words", [
    ({"prefix": "has space"}, "prefix"),
    ({"prefix": "a/b"}, "prefix"),
    ({"prefix": ""}, "prefix"),
    ({"prefix": 7}, "prefix"),
    ({"hosts": ["x"]}, "unknown config key"),
    ({"segment_size": 1000}, "segment_size"),
    ({"segment_size": "64M"}, "segment_size"),
    ({"segment_size": 1024 * 1024, "message_size_limit": 8 * 1024 * 1024}, "message_size_limit"),
    ({"mode": 0o400}, "mode"),
    ({"capacity": 0}, "capacity"),
    ({"expiry": -1}, "expiry"),
    ({"receive_spin": -0.001}, "receive_spin"),
    ({"receive_spin": 2}, "receive_spin"),
    ({"receive_spin": "fast"}, "receive_spin"),
])
def test_config_errors_are_clear(config, words):
    with pytest.raises(LayerConfigError, match=words):
        IPCChannelLayer(**config)


def test_bad_input_writes_nothing(prefix):
    layer = IPCChannelLayer(prefix=prefix)

    async def scenario():
        with pytest.raises(TypeError):
            await layer.send("bad.input", {"type": "test.bad", "value": {1, 2}})
        with pytest.raises(TypeError):
            await layer.send("bad name", {"type": "test.bad"})
        await layer.send("bad.input", {"type": "test.marker"})
        return await layer.receive("bad.input")

    assert run(scenario()) == {"type": "test.marker"}
    assert check(layer._current().segment) == []
    layer.close_sync()
