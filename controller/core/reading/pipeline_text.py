"""A pipeline run's status as lines of text: ``rolloutctl pipeline status``, and the
pipeline part of a report across environments.

Pure: the run ``GET /pipelines/{flag}`` serves (:class:`.PipelineRun`, built by
:func:`.pipeline_view` and read back by its clients) in, text out.
"""

from __future__ import annotations

from controller.core.reading.pipeline_run import PipelineApprovals, PipelineRun, PipelineStep


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
