"""MODEL-1: random sequences of layer operations, run on the layer and on the model side by side.

Single-requirement tests check one rule at a time; bugs that need a sequence (a wrong
order only after a ChannelFull, capacity shared by ``p!a`` and ``p!b`` going astray after
a group_send, a flush that leaves something behind) are found here. Hypothesis draws the
sequences and shrinks a failing one to a short list of steps.

A receive the model says would wait is checked without waiting out a quiet period: the
receive is started, a new "probe" message is sent to that channel, and the receive must
return exactly the probe, so a stale or duplicated message would show up instead. Only
when the probe cannot be sent (the channel's non-local part is full) is the quiet period
waited out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import configuration as hypothesis_configuration
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from asgi_conformance.model import FULL, OK, PossibleStates
from asgi_conformance.runner import LayerPool, requirement
from asgi_conformance.vocabulary import (
    LayerTarget,
    Message,
    current_settings,
    expect_message,
    fresh_channel,
    fresh_group,
    is_channel_full,
    offers,
    process_prefix_of,
    yield_steps,
)

CAPACITY = 3  # small, so sequences reach ChannelFull often
STEPS_PER_EXAMPLE = 30
PROCESS_ROLES = ("process-a", "process-b")  # two channels sharing one non-local part
NORMAL_ROLES = ("normal-a", "normal-b")
GROUP_ROLES = ("group-a", "group-b")

Result = TypeVar("Result")


@dataclass(frozen=True)
class Features:
    """What the layer offers; the machine only uses operations the layer has."""

    groups: bool
    flush: bool
    normal_channels: bool
    capacity: bool

    @classmethod
    def of(cls, target: LayerTarget) -> Features:
        return cls(*(offers(target, name) for name in ("groups", "flush", "normal-channels", "capacity")))


@requirement("MODEL-1", needs=["backlog"])
def test_random_operation_sequences_match_the_model(
        request: pytest.FixtureRequest, asgi_layer_factory: Callable[..., Any], asgi_target: LayerTarget,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    examples = request.config.getoption("asgi_model_examples")
    machine = machine_for(asgi_layer_factory, Features.of(asgi_target))
    with _hypothesis_storage_in(tmp_path_factory.mktemp("hypothesis")):
        run_state_machine_as_test(machine, settings=settings(  # type: ignore[no-untyped-call]  # Hypothesis leaves it untyped
            max_examples=examples,
            stateful_step_count=STEPS_PER_EXAMPLE,
            deadline=None,
            derandomize=True,  # the same sequences every run: a CI gate must not flicker
            database=None,  # no example database in the user's project
            suppress_health_check=list(HealthCheck),  # network layers are slow by Hypothesis' standards
            print_blob=False,
            phases=(Phase.explicit, Phase.generate, Phase.shrink),  # "explain" traces every line: slow
        ))


@contextlib.contextmanager
def _hypothesis_storage_in(directory: Path) -> Iterator[None]:
    """Keep Hypothesis' caches (it writes .hypothesis/constants even without a database) out of
    the user's folder, and restore whatever storage place was set before."""
    previous = vars(hypothesis_configuration).get("__hypothesis_home_directory")
    hypothesis_configuration.set_hypothesis_home_dir(directory)
    try:
        yield
    finally:
        hypothesis_configuration.set_hypothesis_home_dir(previous)


def machine_for(factory: Callable[..., Any], features: Features) -> type[RuleBasedStateMachine]:
    """A state machine class for this layer: one layer and one event loop per example."""
    roles = PROCESS_ROLES + (NORMAL_ROLES if features.normal_channels else ())
    channel_roles = st.sampled_from(roles)
    group_roles = st.sampled_from(GROUP_ROLES)
    capacity = CAPACITY if features.capacity else None

    class LayerAgainstModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.last_step_passed = True
            self.pool = LayerPool(factory)
            self.numbers = itertools.count()
            self.model = PossibleStates(capacity)
            try:
                self.layer = self.pool.make(**({"capacity": capacity} if capacity else {}))
                self.channels = self.run(self._name_channels())
            except BaseException:
                self._release()
                raise
            self.groups = {role: fresh_group("model") for role in GROUP_ROLES}

        async def _name_channels(self) -> dict[str, str]:
            """Fresh names, so examples on a shared server never see each other's messages."""
            first: str = await self.layer.new_channel()
            non_local = process_prefix_of(first)
            names = {"process-a": first, "process-b": (non_local + "sibling" + first[len(non_local):])[:99]}
            names.update({role: fresh_channel("model") for role in NORMAL_ROLES})
            return names

        def run(self, coroutine: Awaitable[Result]) -> Result:
            """Run one step's coroutine on this example's loop; a hang becomes a clear failure."""
            try:
                return self.loop.run_until_complete(asyncio.wait_for(coroutine, current_settings().timeout))
            except asyncio.TimeoutError:
                raise AssertionError(f"a step did not finish within {current_settings().timeout:g} s: the layer hung") from None

        def message(self, kind: str) -> Message:
            return {"type": f"model.{kind}", "n": next(self.numbers)}

        # --- steps (made into rules below, for the operations the layer offers) ------------
        def send(self, role: str, count: int) -> None:
            """``count`` sends in a row: bursts reach ChannelFull in few steps."""
            channel = self.channels[role]
            for _ in range(count):
                message = self.message("send")
                self.model.send(channel, dict(message), self.run(self._send(channel, message)))

        def receive(self, role: str, count: int) -> None:
            """Up to ``count`` receives in a row, ending at the first one the model says waits."""
            channel = self.channels[role]
            for _ in range(count):
                heads = self.model.heads(channel)
                if None not in heads:
                    self.model.received(channel, self.run(expect_message(self.layer, channel)))
                    continue
                if heads == [None] and self.model.send_outcomes(channel) == {OK}:
                    probe = self.message("probe")
                    answer, got = self.run(self._receive_while_sending(channel, dict(probe)))
                    self.model.send(channel, probe, answer)
                    self.model.received(channel, got)
                else:  # no room for a probe, or the model is unsure: watch the quiet period
                    self.model.received(channel, self.run(self._receive_within_quiet_period(channel)))
                return

        def group_add(self, role: str, group: str) -> None:
            self.run(self.layer.group_add(self.groups[group], self.channels[role]))
            self.model.group_add(self.groups[group], self.channels[role])

        def group_discard(self, role: str, group: str) -> None:
            self.run(self.layer.group_discard(self.groups[group], self.channels[role]))
            self.model.group_discard(self.groups[group], self.channels[role])

        def group_send(self, group: str) -> None:
            message = self.message("group")
            try:
                self.run(self.layer.group_send(self.groups[group], message))
            except Exception as exc:
                if is_channel_full(exc):
                    raise AssertionError(f"group_send raised {exc!r}: a full member must silently "
                                         "miss the message (CAP-5)") from exc
                raise
            self.model.group_send(self.groups[group], dict(message))

        def flush(self) -> None:
            self.run(self.layer.flush())
            self.model.flush()

        # --- layer calls -------------------------------------------------------------------
        async def _send(self, channel: str, message: Message) -> str:
            try:
                await self.layer.send(channel, message)
            except Exception as exc:
                if is_channel_full(exc):
                    return FULL
                raise
            return OK

        async def _receive_while_sending(self, channel: str, probe: Message) -> tuple[str, Message | None]:
            """Start a receive, then send ``probe``: (send's answer, what the receive returned)."""
            waiter = asyncio.ensure_future(self.layer.receive(channel))
            try:
                await yield_steps(3)  # let the receive start waiting (the outcome must not depend on it)
                answer = await self._send(channel, probe)
                if answer == FULL:
                    return answer, None
                try:
                    return answer, await asyncio.wait_for(asyncio.shield(waiter), current_settings().delivery_timeout)
                except asyncio.TimeoutError:
                    return answer, None
            finally:
                if not waiter.done():
                    waiter.cancel()
                    await asyncio.gather(waiter, return_exceptions=True)

        async def _receive_within_quiet_period(self, channel: str) -> Message | None:
            try:
                return await asyncio.wait_for(self.layer.receive(channel), current_settings().quiet_period)
            except asyncio.TimeoutError:
                return None

        async def _drain(self) -> None:
            """Receive every message the model is sure the layer still holds, in order."""
            for channel in self.channels.values():
                while None not in self.model.heads(channel):
                    self.model.received(channel, await expect_message(self.layer, channel))

        # --- bookkeeping -------------------------------------------------------------------
        def _release(self) -> None:
            """Flush and close the layer, then end whatever it left running on this loop."""
            try:
                self.loop.run_until_complete(self.pool.aclose())
            finally:
                leftovers = asyncio.all_tasks(self.loop)
                if leftovers:
                    for task in leftovers:
                        task.cancel()
                    self.loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.close()

        def teardown(self) -> None:
            try:
                if self.last_step_passed:  # else the step's own failure is the one to report
                    self.run(self._drain())
            finally:
                self._release()

    # Rules for missing features are left out, not guarded by preconditions: Hypothesis
    # shrinks failing sequences far better without preconditions.
    arguments: dict[str, dict[str, st.SearchStrategy[Any]]] = {
        "send": {"role": channel_roles, "count": st.integers(1, CAPACITY + 1)},
        "receive": {"role": channel_roles, "count": st.integers(1, CAPACITY + 1)}}
    if features.groups:
        arguments.update(group_add={"role": channel_roles, "group": group_roles},
                         group_discard={"role": channel_roles, "group": group_roles},
                         group_send={"group": group_roles})
    if features.flush:
        arguments["flush"] = {}
    rule_of: Callable[..., Callable[[Callable[..., None]], Callable[..., None]]] = rule  # strategies by keyword only
    rules = {name: rule_of(**strategies)(_step(getattr(LayerAgainstModel, name)))
             for name, strategies in arguments.items()}
    return type("LayerAgainstModel", (LayerAgainstModel,), rules)


def _step(method: Callable[..., None]) -> Callable[..., None]:
    """Note whether a step completed, so teardown does not stack a second failure on the first."""

    @functools.wraps(method)
    def step(self: Any, **kwargs: Any) -> None:
        self.last_step_passed = False
        method(self, **kwargs)
        self.last_step_passed = True

    return step
