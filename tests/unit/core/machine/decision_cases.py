"""Decisions of every producer, as published: the cases behind ``decision_shapes.json``.

Each table of the machine's own tests is run (every state against every
input), and so are the release pipeline's, the advisor's, the schedule's,
the windows', the approvals' and the audits of app keys and ingest
commands. Of the decisions they make, the first of each shape (kind,
action, outcome and the evidence's keys, nested) is kept under the name of
the case that made it: a producer whose evidence changed shape, key order
or number types is found by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from controller.core.machine import log_gaps, machine
from controller.core.machine.gate import evaluate
from controller.core.release.events import Decision as PipelineDecision
from controller.core.release.events import RolloutEnded
from controller.core.release.machine import begin
from controller.core.release.machine import step as release_step
from controller.core.rollouts import (
    Action,
    GateInput,
    Input,
    Rollout,
)
from controller.core.rollouts.advice import Advice, Opinion, Unavailable
from controller.core.rollouts.policy import TRIGGERS
from controller.core.rollouts.rollout import (
    BackendDriftInput,
    KeysRevokedInput,
    OpinionInput,
    TickInput,
)
from controller.core.trust.app_keys import audit, decide
from controller.core.wire import PipelineEvidence, RolloutEnding, RolloutEvidence
from controller.core.wire.messages import CommandAction
from controller.daemon.outputs.rendering import render
from controller.daemon.rollouts.run_writer import _decision
from controller.settings import TopicSettings
from tests.unit.core.machine import test_approving as approving
from tests.unit.core.machine import test_health_actions as health
from tests.unit.core.machine import test_machine as table
from tests.unit.core.machine import test_machine_watch as watch
from tests.unit.core.machine import test_machine_windows as windows
from tests.unit.core.machine import test_scheduling as scheduling
from tests.unit.core.machine.gate import test_gate as gates
from tests.unit.core.machine.test_log_gaps import _command
from tests.unit.core.release import test_machine as release
from tests.unit.core.trust import test_app_keys as keys

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
Case = tuple[str, Rollout | None, Input]


def _machine_cases() -> Iterator[Case]:
    for s, state in sorted(table.STATES.items()):
        for i, event in sorted(table.INPUTS.items()):
            yield f"machine/{s}/{i}", state, event
    for s, (state, _) in sorted(watch.WATCH_STATES.items()):
        for i, event in sorted(watch.ALL_INPUTS.items()):
            yield f"watch/{s}/{i}", state, event
    for trigger in TRIGGERS:
        for act in health.ACTIONS:
            state = health.running(trigger, act)
            yield f"health/{trigger}/{act}", state, health.trigger_input(state, trigger)
    for what, state, event, *_ in windows.CASES:
        yield f"windows/{what}", state, event
    yield from _gate_cases()
    yield from _advisor_cases()


def _gate_cases() -> Iterator[Case]:
    """Real verdicts, with every part a gate writes, through the machine."""
    running = gates.rollout()
    healthy = evaluate(running, gates.HEALTHY, gates.LATE)
    bad = gates.data(gates.arm(units=1_111, errors=650), gates.arm())
    yield "gate/healthy", running, GateInput(healthy, gates.LATE)
    yield "gate/regression", running, GateInput(evaluate(running, bad, gates.EARLY), gates.EARLY)
    last = running.model_copy(update={"stage": len(running.plan.stages) - 1})
    yield "gate/healthy-last", last, GateInput(healthy, gates.LATE)
    drift = BackendDriftInput(
        "changed by hand: rollout 50 -> 20", NOW, RolloutEvidence(changes=["rollout"])
    )
    yield "backend/drift", running, drift


def _advisor_cases() -> Iterator[Case]:
    running = gates.rollout()
    healthy = evaluate(running, gates.HEALTHY, gates.LATE)
    said = Advice(action="advance", confidence=0.9, rationale="p99 flat")
    objects = Advice(action="rollback", confidence=0.8, rationale="errors doubled")
    holds = Advice(action="hold", confidence=0.6, rationale="too early")
    down = Unavailable("timed out after 5 s", 5000.0)
    for name, advice in (("advance", said), ("rollback", objects), ("hold", holds)):
        for mode in ("gating", "advisory"):
            event = GateInput(healthy, gates.LATE, advice=Opinion(advice, "m", 5.0))
            yield f"advisor/{name}/{mode}", running, _moded(event, mode)
    yield (
        "advisor/down",
        running,
        GateInput(healthy, gates.LATE, advice=down, advisor_mode="gating"),
    )
    for name, result in (("opinion", Opinion(said, "m", 5.0)), ("missing", down)):
        yield f"opinion/{name}", running, OpinionInput(running, gates.LATE, result, gates.LATE)


def _moded(event: GateInput, mode: str) -> GateInput:
    return GateInput(event.verdict, event.now, advice=event.advice, advisor_mode=mode)


def _sequences() -> Iterator[tuple[str, Rollout | None, list[Input]]]:
    """Cases that need a few inputs: approvals, a revocation, a schedule, a time box."""
    for name, (gate, given, *_) in sorted(approving.CASES.items()):
        events: list[Input] = [approving.approve(k, roles=r, hours=h) for k, r, h in given]
        yield f"approving/{name}", approving.awaiting(gate), events
    revoke = KeysRevokedInput(("ana",), approving.T0 + timedelta(hours=1))
    yield (
        "approving/revoked",
        approving.awaiting(approving.TWO_APPROVERS),
        [
            approving.approve("ana"),
            revoke,
        ],
    )
    yield "schedule/fired", None, [scheduling.start(), TickInput(scheduling.AT)]
    cancel = scheduling.command(CommandAction.ABORT, scheduling.T0 + timedelta(hours=1))
    yield "schedule/cancelled", None, [scheduling.start(), cancel]
    boxed = scheduling.start(at=None, the_plan=scheduling.boxed())
    yield "schedule/time-box", None, [boxed, TickInput(scheduling.ENDS)]


def machine_decisions() -> Iterator[tuple[str, bytes]]:
    """``(case, the decision as published)`` for each decision the machine's cases make."""
    for name, state, event in _machine_cases():
        new, actions = machine.step(state, event)
        yield from _published(name, new, actions)
    for name, first, events in _sequences():
        state = first
        for n, event in enumerate(events):
            state, actions = machine.step(state, event)
            yield from _published(f"{name}/{n}", state, actions)


def _published(
    name: str, state: Rollout | None, actions: list[Action]
) -> Iterator[tuple[str, bytes]]:
    flag = state.flag if state is not None else "checkout"
    for n, message in enumerate(render(flag, state, actions, NOW, TopicSettings())):
        if message.topic == TopicSettings().decisions:
            yield f"{name}/{n}", message.value


def release_decisions() -> Iterator[tuple[str, bytes]]:
    """The release pipeline's decisions, through the pipeline's outbox."""

    for name, (pipeline, events, *_) in sorted(release.CASES.items()):
        state, actions = begin(
            pipeline,
            run_id=release.RUN,
            flag="checkout",
            now=release.T0,
            actor="ana",
            command_id="c0",
        )
        found = list(actions)
        for event in events:
            state, actions = release_step(state, event)
            found += actions
        for n, action in enumerate(a for a in found if isinstance(a, PipelineDecision)):
            yield f"release/{name}/{n}", _decision("checkout", release.RUN, "p", action, NOW)


def _nested() -> Iterator[tuple[str, bytes]]:
    """A stop whose ended rollout carries what decided it, as the daemon hands it over."""

    state, _ = begin(
        release.RELEASE,
        run_id=release.RUN,
        flag="checkout",
        now=release.T0,
        actor="ana",
        command_id="c0",
    )
    dev = release.ended("dev", "rolled_back", 10, "p99 regressed")
    ended = RolloutEnded(
        dev.environment,
        dev.rollout_id,
        dev.outcome,
        dev.now,
        dev.reason,
        RolloutEnding(decided="rollback", by="gate"),
    )
    _, actions = release_step(state, ended)
    for n, action in enumerate(a for a in actions if isinstance(a, PipelineDecision)):
        yield f"release/nested/{n}", _decision("checkout", release.RUN, "p", action, NOW)
    refused = PipelineDecision(
        key="c9/refused",
        kind="pipeline_start",
        outcome="rejected",
        reason="no such pipeline",
        command_id="c9",
        evidence=PipelineEvidence(actor="ana", key_id="ops-1"),
    )
    yield "release/refused", _decision("checkout", "", "", refused, NOW)


def audits() -> Iterator[tuple[str, bytes]]:
    """App keys' and ingest commands' decisions."""

    ingest = _command(partitions=[1])
    yield "ingest/applied", orjson.dumps(log_gaps.audit(ingest, [1], now_ms=5))
    yield "ingest/rejected", orjson.dumps(log_gaps.audit(ingest, "none held", now_ms=5))
    for name, given, _ in keys.DECISIONS:
        made = decide(keys.LIVE, given, now_ms=keys.NOW_MS)
        yield f"app_key/{name}", orjson.dumps(audit(given, made, now_ms=keys.NOW_MS))


def shape(raw: bytes) -> str:
    """What makes two decisions the same case: kind, action, outcome, the evidence's keys."""
    decision = orjson.loads(raw)
    return orjson.dumps(
        [decision["kind"], decision["action"], decision["outcome"], _keys(decision["evidence"])]
    ).decode()


def _keys(value: Any) -> Any:
    if isinstance(value, dict):
        return [[k, _keys(v)] for k, v in value.items()]
    if isinstance(value, list):
        return [_keys(v) for v in value[:1]]
    return type(value).__name__


def cases(*sources: Callable[[], Iterable[tuple[str, bytes]]]) -> dict[str, Any]:
    """The first decision of each shape, by case name: its evidence as published."""
    kept: dict[str, Any] = {}
    seen: set[str] = set()
    for source in sources:
        for name, raw in source():
            said = shape(raw)
            if said not in seen:
                seen.add(said)
                kept[name] = orjson.loads(raw)["evidence"]
    return kept


ALL = (machine_decisions, release_decisions, _nested, audits)
