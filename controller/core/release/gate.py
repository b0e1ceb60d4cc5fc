"""The gate before a step: what must hold for the next environment to start, and what does.

In order: the previous environment completed; its ``soak`` has elapsed since;
the step's approvals are all given and live; a release window is open.
:func:`gate` checks each, so that a status can show everything the step
still waits for, and gives the evidence a start decision carries. Pure: the
clock is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from controller.core.release.approvals import approvals_needed
from controller.core.release.state import PipelineState, RunPhase, StepStatus
from controller.core.rollouts import may_move_forward, waiting_reason
from controller.core.wire import PipelineEvidence, Soak


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """Whether the step may start now; else what it waits for, one line each."""

    open: bool
    waiting_for: tuple[str, ...] = ()
    evidence: PipelineEvidence = field(default_factory=PipelineEvidence)


def gate(state: PipelineState, index: int, now: datetime) -> GateVerdict:
    """The gate of step ``index`` (past the first) at ``now``."""
    step, before = state.pipeline.steps[index], state.steps[index - 1]
    waits: list[str] = []
    evidence = PipelineEvidence(after=before.environment)
    if before.status is not StepStatus.COMPLETED or before.ended_at is None:
        waits.append(f"{before.environment} to complete (it is {before.status.value})")
    else:
        evidence = evidence.merged(completed_at=before.ended_at.isoformat())
        if before.rollout_id is not None:
            evidence = evidence.merged(completed_rollout=before.rollout_id)
        if step.soak is not None:
            until = before.ended_at + step.soak
            soak = Soak(soak_for=str(step.soak), until=until.isoformat())
            evidence = evidence.merged(soak=soak)
            if now < until:
                waits.append(f"soak until {until.isoformat()} ({until - now} left)")
    if state.held is not None:
        waits.append(f"an operator: {state.held}")
    if step.approval is not None:
        needed = approvals_needed(state.approvals, step.environment, step.approval, now)
        live = state.approvals.live(step.environment, step.approval, now)
        evidence = evidence.merged(
            approvals=[a.evidence() for a in live],
            approvals_needed={r.role: r.count for r in step.approval.needs},
        )
        if not needed.done:
            waits.append(f"approvals: {needed.summary()}")
    if step.windows:
        verdict = may_move_forward(step.windows, now)
        evidence = evidence.merged(window=verdict.reason)
        if not verdict.allowed:
            waits.append(f"a release window: {verdict.reason}; {waiting_reason(step.windows, now)}")
    return GateVerdict(not waits, tuple(waits), evidence)


def next_gate(state: PipelineState, now: datetime) -> tuple[str, GateVerdict] | None:
    """The step that starts next and its gate at ``now`` (what a status shows), or None
    when nothing is to start: the run is over, or its first step has not started."""
    index = state.next_pending
    if state.phase is not RunPhase.RUNNING or index is None or index == 0:
        return None
    return state.steps[index].environment, gate(state, index, now)
