"""What ``rolloutctl pipeline status`` and the console's pipeline page show: a run's
environments, what gates the next step, and who still has to approve.

:func:`pipeline_view` turns a run (and each environment's rollout, as loaded)
into a :class:`.PipelineRun`, whose JSON is the answer of ``GET /pipelines/{flag}``:
the run's phase; per environment its step's status, the key its rollout has
(``checkout@staging``), its rollout (phase, stage, percent) and how it ended, and
the gate before it (soak, approvals N of M per role, release windows); the step
that starts next with everything it still waits for (the previous environment, a
soak, approvals, a window); and per step that needs approvals, how many are
missing per role and who has approved, when. :func:`pipeline_text` writes the run as
lines of text: ``rolloutctl pipeline status``, and the pipeline part of a report across
environments. Pure: the clock is an argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from controller.core.common import PLAIN_FLAG_KEY_PATTERN
from controller.core.reading.pipeline_run import (
    ApprovalGiven,
    PipelineApprovals,
    PipelineNext,
    PipelineRollout,
    PipelineRun,
    PipelineStep,
)
from controller.core.reading.wording import stage_label
from controller.core.release import ApprovalGate, PipelineState, approvals_needed, next_gate
from controller.core.release import PipelineStep as PlannedStep
from controller.core.rollouts import Rollout

MAX_PLAIN_FLAG = 128


def pipeline_view(
    run: PipelineState,
    rollouts: Mapping[str, Rollout | None],
    now: datetime,
    keys: Mapping[str, str] | None = None,
) -> PipelineRun:
    """The run as ``pipeline status`` shows it; ``rollouts``: each environment's rollout;
    ``keys``: each environment's rollout key (left out: none is shown)."""
    found = next_gate(run, now)
    return PipelineRun(
        run_id=run.run_id,
        pipeline=run.pipeline.name,
        flag=run.flag,
        phase=run.phase,
        stopped_at=run.stopped_at,
        started_at=run.started_at.isoformat(),
        updated_at=run.updated_at.isoformat(),
        applied=run.applied,
        environments=[
            _step(run, i, rollouts.get(s.environment), now, (keys or {}).get(s.environment))
            for i, s in enumerate(run.steps)
        ],
        next=None
        if found is None
        else PipelineNext(
            environment=found[0], open=found[1].open, waiting_for=list(found[1].waiting_for)
        ),
    )


def _step(
    run: PipelineState, index: int, rollout: Rollout | None, now: datetime, key: str | None
) -> PipelineStep:
    step, plan = run.steps[index], run.pipeline.steps[index]
    ours = rollout is not None and rollout.rollout_id == step.rollout_id
    return PipelineStep(
        environment=step.environment,
        key=key,
        status=step.status,
        plan=run.pipeline.plan_name(step.environment),
        rollout_id=step.rollout_id,
        started_at=step.started_at.isoformat() if step.started_at else None,
        ended_at=step.ended_at.isoformat() if step.ended_at else None,
        ending=step.ending,
        rollout=_rollout(rollout) if rollout is not None and ours else None,
        soak=str(plan.soak) if plan.soak is not None else None,
        windows=len(plan.windows),
        gate=gate_text(plan) if index else None,
        approvals=None
        if plan.approval is None
        else _approvals(run, step.environment, plan.approval, now),
    )


def _approvals(
    run: PipelineState, environment: str, gate: ApprovalGate, now: datetime
) -> PipelineApprovals:
    """Per role, how many approvals the step needs and still misses, and who gave them, when."""
    needed = approvals_needed(run.approvals, environment, gate, now)
    return PipelineApprovals(
        needed={rule.role: rule.count for rule in gate.needs},
        missing={**needed.missing},
        approved={role: list(names) for role, names in needed.approved.items()},
        given=[
            ApprovalGiven(operator=a.operator, key_id=a.key_id, role=a.role, at=a.at.isoformat())
            for a in run.approvals.live(environment, gate, now)
        ],
        expires_after=str(gate.expires_after),
        summary=needed.summary(),
    )


def _rollout(rollout: Rollout) -> PipelineRollout:
    stages = len(rollout.plan.stages)
    percent = rollout.plan.stages[rollout.stage].percent
    return PipelineRollout(
        phase=rollout.phase.value,
        stage=rollout.stage,
        stages=stages,
        label=stage_label(rollout.stage, stages, percent),
        percent=rollout.percent,
    )


def gate_text(step: PlannedStep) -> str:
    """What must hold before ``step`` starts, after the previous environment completed:
    ``soak 1:00:00; approvals: 2 from approver; a release window``, or ``nothing more``."""
    parts = []
    if step.soak is not None:
        parts.append(f"soak {step.soak}")
    if step.approval is not None:
        needs = ", ".join(f"{rule.count} from {rule.role}" for rule in step.approval.needs)
        parts.append(f"approvals: {needs}")
    if step.windows:
        parts.append("a release window" if len(step.windows) == 1 else "release windows")
    return "; ".join(parts) or "nothing more"


def flag_problem(flag: str) -> str | None:
    """Why ``flag`` is no flag's own key (a pipeline is a flag's, not an environment's), or
    None: at most 128 letters, digits and ``. _ : -``, beginning with a letter or digit."""
    if len(flag) > MAX_PLAIN_FLAG or not re.fullmatch(PLAIN_FLAG_KEY_PATTERN, flag):
        return (
            "flag: a flag's own key is 1 to 128 letters, digits and '. _ : -',"
            " beginning with a letter or digit"
        )
    return None


def pipeline_text(run: PipelineRun) -> str:
    """The run as lines: its phase; each environment's step, rollout, gate and approvals; and
    what the next step waits for."""
    lines = [
        f"pipeline {run.pipeline} for {run.flag} (run {run.run_id}): {run.phase}"
        + (f" at {run.stopped_at}" if run.stopped_at else "")
    ]
    for step in run.environments:
        lines.append(f"  {step.environment:<12} {step_line(step)}")
        lines.extend(f"  {'':<12} {line}" for line in approval_lines(step.approvals))
    found = run.next
    if found is not None:
        state = "may start now" if found.open else "waits for: " + "; ".join(found.waiting_for)
        lines.append(f"next: {found.environment} {state}")
    return "\n".join(lines)


def step_line(step: PipelineStep) -> str:
    """``running: rollout running at stage 1/2 (5%), serving 5%; gate: soak 1:00:00``."""
    line = str(step.status)
    rollout = step.rollout
    if rollout is not None:
        at = f" at {rollout.label}" if rollout.label else ""
        line += f": rollout {rollout.phase}{at}, serving {rollout.percent:g}%"
    if step.ending:
        line += f" ({step.ending})"
    if step.gate:
        line += f"; gate: {step.gate}"
    return line


def approval_lines(approvals: PipelineApprovals | None) -> list[str]:
    """Per role, N of M given (by whom, when), then who still has to approve."""
    if approvals is None:
        return []
    lines = []
    for role, count in approvals.needed.items():
        mine = [a for a in approvals.given if a.role == role]
        who = ", ".join(f"{a.operator} (key {a.key_id}) at {a.at}" for a in mine)
        lines.append(f"approvals {role}: {len(mine)} of {count}" + (f": {who}" if who else ""))
    missing = any(approvals.missing.values())
    lines.append(f"still to approve: {approvals.summary}" if missing else approvals.summary)
    return lines
