"""What ``rolloutctl pipeline status`` shows: a run's environments, what gates the next step,
and who still has to approve.

:func:`pipeline_view` turns a run (and each environment's rollout, as loaded)
into plain data, the answer of ``GET /pipelines/{flag}``: the run's phase;
per environment its step's status, its rollout (phase, stage, percent) and
how it ended; the step that starts next with everything it still waits for
(the previous environment, a soak, approvals, a window); and per step that
needs approvals, how many are missing per role and who has approved. Pure:
the clock is an argument.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from controller.core.release import PipelineState, approvals_needed, next_gate
from controller.core.rollouts import Rollout


def pipeline_view(
    run: PipelineState, rollouts: dict[str, Rollout | None], now: datetime
) -> dict[str, Any]:
    """The run as ``pipeline status`` shows it; ``rollouts``: each environment's rollout."""
    found = next_gate(run, now)
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline.name,
        "flag": run.flag,
        "phase": run.phase.value,
        "stopped_at": run.stopped_at,
        "started_at": run.started_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "environments": [
            _step(run, i, rollouts.get(s.environment), now) for i, s in enumerate(run.steps)
        ],
        "next": None
        if found is None
        else {
            "environment": found[0],
            "open": found[1].open,
            "waiting_for": list(found[1].waiting_for),
        },
    }


def _step(run: PipelineState, index: int, rollout: Rollout | None, now: datetime) -> dict[str, Any]:
    step, plan = run.steps[index], run.pipeline.steps[index]
    ours = rollout is not None and rollout.rollout_id == step.rollout_id
    shown: dict[str, Any] = {
        "environment": step.environment,
        "status": step.status.value,
        "plan": run.pipeline.plan_name(step.environment),
        "rollout_id": step.rollout_id,
        "started_at": step.started_at.isoformat() if step.started_at else None,
        "ended_at": step.ended_at.isoformat() if step.ended_at else None,
        "ending": step.ending,
        "rollout": None
        if rollout is None or not ours
        else {"phase": rollout.phase.value, "stage": rollout.stage, "percent": rollout.percent},
        "soak": str(plan.soak) if plan.soak is not None else None,
        "windows": len(plan.windows),
    }
    if plan.approval is not None:
        needed = approvals_needed(run.approvals, step.environment, plan.approval, now)
        shown["approvals"] = {
            "missing": needed.missing,
            "approved": {role: list(names) for role, names in needed.approved.items()},
            "summary": needed.summary(),
        }
    return shown
