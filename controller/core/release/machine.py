"""The pipeline state machine: a run's state and an event in, the new state and actions out.

* :func:`begin` starts the first environment.
* A completion marks its step; the next step starts when its gate is open
  (:mod:`.gate`), else a decision says what it waits for, and the clock
  (:class:`~.events.TimePassed`) or an approval opens it later.
* A rollback, abort or kill, in any environment that has started, stops the
  run there and says so (a decision and an alert): nothing after it starts,
  ever; what still runs elsewhere is named, and left to its own rollout.
* A replayed event changes nothing: a step only moves forward, a command id
  is decided once, and every decision's key is made of the run and what was
  decided, the same on a replay.

Pure, like :mod:`controller.core.machine`: the caller stores the state and
the decisions together, and starts the rollouts asked for.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from controller.core.release.approvals import Approval, Counted, approvals_needed, record, revoke
from controller.core.release.events import (
    Approve,
    Decision,
    Event,
    KeyRevoked,
    LateRegression,
    RolloutEnded,
    StartRollout,
    Step,
    TimePassed,
)
from controller.core.release.gate import gate, next_gate
from controller.core.release.pipeline import Pipeline
from controller.core.release.state import (
    PipelineState,
    RunPhase,
    StepState,
    StepStatus,
    decision_key,
    rollout_id_of,
)
from controller.core.rollouts import RaiseAlert
from controller.core.wire import PipelineEvidence


def begin(
    pipeline: Pipeline,
    *,
    run_id: str,
    flag: str,
    now: datetime,
    actor: str,
    command_id: str,
    applied: str | None = None,
) -> Step:
    """A new run of ``pipeline`` for ``flag``: its first environment starts now."""
    state = PipelineState(
        run_id=run_id,
        pipeline=pipeline,
        flag=flag,
        steps=tuple(StepState(environment=env) for env in pipeline.environments),
        started_at=now,
        updated_at=now,
        applied=applied,
    )
    why = f"pipeline {pipeline.name} started by {actor}"
    return _start(state, 0, now, why, PipelineEvidence(actor=actor, command_id=command_id))


def step(state: PipelineState, event: Event) -> Step:
    """The run after ``event``, and the actions it takes."""
    if isinstance(event, RolloutEnded):
        return _ended(state, event)
    if isinstance(event, TimePassed):
        return _next(state, event.now)
    if isinstance(event, Approve):
        return _approve(state, event.approval, event.now)
    if isinstance(event, LateRegression):
        return _late(state, event)
    return _revoked(state, event)


def _decision(
    state: PipelineState,
    what: tuple[str, ...],
    kind: str,
    reason: str,
    *,
    environment: str | None,
    evidence: PipelineEvidence,
    outcome: Literal["applied", "rejected", "waiting"] = "applied",
    command_id: str | None = None,
) -> Decision:
    return Decision(
        key=decision_key(state.run_id, *what),
        kind=kind,
        outcome=outcome,
        reason=reason,
        environment=environment,
        command_id=command_id,
        evidence=evidence,
    )


def _start(
    state: PipelineState, index: int, now: datetime, reason: str, evidence: PipelineEvidence
) -> Step:
    environment = state.pipeline.steps[index].environment
    rollout_id = rollout_id_of(state.run_id, environment)
    running = StepState(
        environment=environment, status=StepStatus.RUNNING, rollout_id=rollout_id, started_at=now
    )
    plan = state.pipeline.plan_for(environment)
    decision = _decision(
        state,
        (environment, "start"),
        "pipeline_start",
        f"{environment} starts: {reason}",
        environment=environment,
        evidence=evidence.merged(
            rollout_id=rollout_id,
            plan=state.pipeline.plan_name(environment),
            overridden=sorted(state.pipeline.overrides.get(environment, {})),
        ),
    )
    start = StartRollout(environment, rollout_id, plan, decision.key)
    return state.with_step(index, running, now), [start, decision]


def _ended(state: PipelineState, event: RolloutEnded) -> Step:
    found = state.step_of(event.environment)
    if found is None or found[1].rollout_id != event.rollout_id:
        return state, []  # not a rollout this run started
    index, current = found
    if event.outcome == "completed":
        if current.status is not StepStatus.RUNNING:
            return state, []  # a replay, or a completion after a stop
        return _completed(state, index, event)
    if current.status.stopped or current.status is StepStatus.PENDING:
        return state, []  # a replay
    return _stopped(state, index, event)


def _completed(state: PipelineState, index: int, event: RolloutEnded) -> Step:
    current = state.steps[index]
    environment = current.environment
    done = current.model_copy(
        update={"status": StepStatus.COMPLETED, "ended_at": event.now, "ending": event.reason[:500]}
    )
    new = state.with_step(index, done, event.now)
    evidence = PipelineEvidence(rollout_id=current.rollout_id, rollout=event.evidence)
    if new.phase is not RunPhase.RUNNING:
        why = f"{environment} completed; the pipeline {_where(new)}, so nothing follows"
        what = (environment, "completed")
        said = _decision(
            new, what, "pipeline_step", why, environment=environment, evidence=evidence
        )
        return new, [said]
    if index + 1 == len(new.steps):
        finished = new.model_copy(update={"phase": RunPhase.COMPLETED})
        why = f"{environment} completed: every environment has completed"
        said = _decision(
            new,
            ("completed",),
            "pipeline_complete",
            why,
            environment=environment,
            evidence=evidence,
        )
        return finished, [said]
    why = f"{environment} completed"
    what = (environment, "completed")
    said = _decision(new, what, "pipeline_step", why, environment=environment, evidence=evidence)
    moved, actions = _next(new, event.now)
    return moved, [said, *(actions or [_waiting(new, index + 1, event.now)])]


def _late(state: PipelineState, event: LateRegression) -> Step:
    """A completed step's late evidence regressed: the run holds its next step, once."""
    found = state.step_of(event.environment)
    if found is None or found[1].rollout_id != event.rollout_id:
        return state, []  # not a rollout this run started
    if state.phase is not RunPhase.RUNNING or state.held is not None:
        return state, []
    why = f"{event.environment} completed, then {event.reason}"[:600]
    held = state.model_copy(update={"held": why, "updated_at": event.now})
    evidence = PipelineEvidence(rollout_id=event.rollout_id)
    said = _decision(
        held,
        (event.environment, "late_regression"),
        "pipeline_hold",
        f"the pipeline holds: {why}",
        environment=event.environment,
        evidence=evidence,
    )
    return held, [said]


def _waiting(state: PipelineState, index: int, now: datetime) -> Decision:
    """What the step at ``index`` waits for, said once: when the step before completes."""
    environment = state.steps[index].environment
    verdict = gate(state, index, now)
    return _decision(
        state,
        (environment, "waiting"),
        "pipeline_gate",
        f"{environment} waits for: {'; '.join(verdict.waiting_for)}",
        environment=environment,
        evidence=verdict.evidence,
        outcome="waiting",
    )


def _next(state: PipelineState, now: datetime) -> Step:
    """Start the next step if its gate is open now; else nothing."""
    found = next_gate(state, now)
    if found is None or not found[1].open:
        return state, []
    index = state.pipeline.environments.index(found[0])
    verdict, before = found[1], state.steps[index - 1].environment
    return _start(state, index, now, f"{before} completed and the gate is open", verdict.evidence)


def _stopped(state: PipelineState, index: int, event: RolloutEnded) -> Step:
    current = state.steps[index]
    environment, status = current.environment, StepStatus(event.outcome)
    ended = current.model_copy(
        update={"status": status, "ended_at": event.now, "ending": event.reason[:500]}
    )
    new = state.with_step(index, ended, event.now)
    outcome = status.value.replace("_", " ")
    evidence = PipelineEvidence(
        rollout_id=current.rollout_id,
        outcome=status.value,
        reason=event.reason,
        rollout=event.evidence,
        not_started=[s.environment for s in new.steps if s.status is StepStatus.PENDING],
        still_running=[s.environment for s in new.steps if s.status is StepStatus.RUNNING],
    )
    what = (environment, status.value)
    if state.phase is not RunPhase.RUNNING:
        why = f"{environment} {outcome}; the pipeline {_where(state)} already"
        said = _decision(
            new, what, "pipeline_step", why, environment=environment, evidence=evidence
        )
        return new, [said]
    stopped = new.model_copy(update={"phase": RunPhase.STOPPED, "stopped_at": environment})
    why = _stop_reason(environment, outcome, event.reason, evidence)
    said = _decision(new, what, "pipeline_stop", why, environment=environment, evidence=evidence)
    details = {"run_id": state.run_id, **evidence.wire()}
    alert = RaiseAlert("pipeline_stopped", "warning", f"{state.flag}: {why}", details)
    return stopped, [said, alert]


def _stop_reason(environment: str, outcome: str, reason: str, evidence: PipelineEvidence) -> str:
    why = f"{environment} {outcome}{f' ({reason})' if reason else ''}: the pipeline stops here"
    if evidence.not_started:
        why += f"; {', '.join(evidence.not_started)} will not start"
    if evidence.still_running:
        why += f"; {', '.join(evidence.still_running)} still runs, on its own"
    return why


def _where(state: PipelineState) -> str:
    if state.phase is RunPhase.STOPPED:
        return f"stopped at {state.stopped_at}"
    return state.phase.value


def _approve(state: PipelineState, approval: Approval, now: datetime) -> Step:
    if approval.command_id in state.approvals.seen:
        return state, []  # decided already: a replay counts nothing
    refused = _approval_refusal(state, approval)
    if refused is not None:
        return _rejected(state, approval, refused, now)
    needs = state.pipeline.steps[state.pipeline.environments.index(approval.step)].approval
    assert needs is not None  # _approval_refusal checked it
    ledger, result = record(state.approvals, approval, needs, now)
    if not isinstance(result, Counted):
        return _rejected(state, approval, result.reason, now)
    new = state.model_copy(update={"approvals": ledger, "updated_at": now})
    needed = approvals_needed(ledger, approval.step, needs, now)
    who = f"{approval.operator} (key {approval.key_id}, {approval.role})"
    evidence = PipelineEvidence(
        approval=approval.evidence(),
        needed=needed.missing,
        approved={role: list(names) for role, names in needed.approved.items()},
    )
    counted = _decision(
        new,
        ("approval", approval.command_id),
        "pipeline_approval",
        f"{who} approved {approval.step}: {needed.summary()}",
        environment=approval.step,
        evidence=evidence,
        command_id=approval.command_id,
    )
    moved, actions = _next(new, now)
    return moved, [counted, *actions]


def _approval_refusal(state: PipelineState, approval: Approval) -> str | None:
    found = state.step_of(approval.step)
    if found is None:
        steps = ", ".join(state.pipeline.environments)
        return f"step: the pipeline has no step {approval.step!r} ({steps})"
    if state.phase is not RunPhase.RUNNING:
        return f"the pipeline {_where(state)}: no step awaits an approval"
    index, current = found
    if current.status is not StepStatus.PENDING:
        return f"{approval.step} has already started ({current.status.value}): nothing to approve"
    if state.pipeline.steps[index].approval is None:
        return f"{approval.step} needs no approval"
    return None


def _rejected(state: PipelineState, approval: Approval, reason: str, now: datetime) -> Step:
    ledger = state.approvals.saw(approval.command_id)
    new = state.model_copy(update={"approvals": ledger, "updated_at": now})
    said = _decision(
        new,
        ("approval", approval.command_id),
        "pipeline_approval",
        reason,
        environment=approval.step,
        evidence=PipelineEvidence(approval=approval.evidence()),
        outcome="rejected",
        command_id=approval.command_id,
    )
    return new, [said]


def _revoked(state: PipelineState, event: KeyRevoked) -> Step:
    pending = [s.environment for s in state.steps if s.status is StepStatus.PENDING]
    ledger, removed = revoke(state.approvals, event.key_id, pending)
    if not removed:
        return state, []
    new = state.model_copy(update={"approvals": ledger, "updated_at": event.now})
    steps = ", ".join(sorted({a.step for a in removed}))
    return new, [
        _decision(
            new,
            ("revoked", event.key_id, *(a.command_id for a in removed)),
            "revoke",  # as a rollout records it: one name for a key's approvals withdrawn
            f"key {event.key_id} revoked: its approvals of {steps} count no more",
            environment=None,
            evidence=PipelineEvidence(removed=[a.evidence() for a in removed]),
        )
    ]
