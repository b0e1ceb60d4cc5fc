"""The console's pipeline page: a flag's environments in order, the gate before each, approvals.

Pure: the run ``GET /pipelines/{flag}`` serves (:class:`controller.core.reading.PipelineRun`,
built by :func:`controller.core.reading.pipeline_view`) in, an HTML fragment out. Each
environment shows its step's status and its rollout (phase, stage, what it
serves), linked to that environment's rollout page; between two environments
the gate before the later one (soak, approvals N of M per role, release
windows) and, for the step that starts next, everything it still waits for;
a step needing approvals lists who approved and when, and how many are still
missing from which role. Every value passes through :func:`esc`.
"""

from __future__ import annotations

from controller.console.pages import esc, flag_url
from controller.core.reading import PipelineApprovals, PipelineNext, PipelineRun, PipelineStep

STEP_CLASS = {
    "completed": "passed",
    "running": "current",
    "rolled_back": "failed",
    "killed": "failed",
    "aborted": "ended",
}


def pipeline_detail(run: PipelineRun) -> str:
    """The pipeline page's fragment: a heading, where the run stands, then each environment."""
    steps, found = run.environments, run.next
    items: list[str] = []
    for i, step in enumerate(steps):
        if i:
            items.append(_gate(steps[i - 1].environment, step, found))
        items.append(_environment(step))
    stopped = f" at {run.stopped_at}" if run.stopped_at else ""
    return (
        f'<h1 data-flag="{esc(run.flag)}">Pipeline <code>{esc(run.pipeline)}</code>'
        f" for {esc(run.flag)}</h1>"
        f'<p class="verdict" data-phase="{esc(run.phase)}">'
        f"{esc(run.phase.capitalize())}{esc(stopped)}: {esc(_next_text(run))}</p>"
        f'<dl class="summary"><dt>run</dt><dd><code>{esc(run.run_id)}</code></dd>'
        f"<dt>started</dt><dd>{esc(run.started_at or '-')}</dd>"
        f"<dt>updated</dt><dd>{esc(run.updated_at or '-')}</dd></dl>"
        f'<h2 id="h-environments">Environments, in order</h2>'
        f'<ol class="pipeline" aria-labelledby="h-environments">{"".join(items)}</ol>'
    )


def _next_text(run: PipelineRun) -> str:
    """What happens next: the step that starts next and what it waits for, else where it is."""
    found = run.next
    if found is None:
        running = [e.environment for e in run.environments if e.status == "running"]
        if run.phase == "running" and running:
            return f"{running[-1]} runs, the last environment to start"
        return "nothing more starts"
    if found.open:
        return f"{found.environment} may start now"
    return f"{found.environment} waits for " + "; ".join(found.waiting_for)


def _environment(step: PipelineStep) -> str:
    env, status = step.environment, str(step.status)
    name = esc(env)
    if step.key and step.rollout_id:
        name = f'<a href="{esc(flag_url(step.key))}">{name}</a>'
    shown = "-"
    if (rollout := step.rollout) is not None:
        at = f" at {rollout.label}" if rollout.label else ""
        shown = f"{rollout.phase}{at}, serving {rollout.percent:g}%"
    ending = f"<dt>ended</dt><dd>{esc(step.ending)}</dd>" if step.ending else ""
    return (
        f'<li class="environment {STEP_CLASS.get(status, "pending")}"'
        f' data-environment="{esc(env)}" data-status="{esc(status)}">'
        f"<h3>{name}</h3>"
        f'<dl class="summary"><dt>step</dt><dd class="status">{esc(status)}</dd>'
        f'<dt>rollout</dt><dd class="rollout">{esc(shown)}</dd>'
        f"<dt>plan</dt><dd>{esc(step.plan or '-')}</dd>{ending}</dl>"
        f"{_approvals(step.approvals)}</li>"
    )


def _gate(before: str, step: PipelineStep, found: PipelineNext | None) -> str:
    """The gate before ``step``; for the step that starts next, what it still waits for."""
    env = step.environment
    waits, is_next = "", found is not None and found.environment == env
    if found is not None and is_next:  # found, for the type checker
        lines = "".join(f"<li>{esc(w)}</li>" for w in found.waiting_for)
        waits = f'<ul class="waits">{lines}</ul>' if lines else "<p>Open: it may start now.</p>"
    gate = step.gate
    then = f", then {gate}" if gate and gate != "nothing more" else ""
    state = "next" if is_next else ("passed" if step.status != "pending" else "later")
    return (
        f'<li class="gate" data-before="{esc(env)}" data-state="{state}">'
        f"<p>Before {esc(env)}: {esc(before)} completes{esc(then)}</p>"
        f"{waits}</li>"
    )


def _approvals(approvals: PipelineApprovals | None) -> str:
    if approvals is None:
        return ""
    given = approvals.given
    missing = sum(approvals.missing.values())
    roles = "".join(
        f'<p class="role" data-role="{esc(role)}">{esc(role)}:'
        f" {sum(1 for a in given if a.role == role)} of {count}</p>"
        for role, count in approvals.needed.items()
    )
    people = "".join(
        f'<li class="approval" data-key="{esc(a.key_id)}">{esc(a.operator)}'
        f" (key {esc(a.key_id)}, {esc(a.role)}) at <time>{esc(a.at)}</time></li>"
        for a in given
    )
    listed = f'<ul class="approvals">{people}</ul>' if people else "<p>No approval yet.</p>"
    still = (
        f'<p class="missing">Still to approve: {esc(approvals.summary)}</p>'
        if missing
        else '<p class="missing">Every approval given.</p>'
    )
    return (
        f'<section class="approvals" data-missing="{missing}"><h4>Approvals</h4>'
        f"{roles}{listed}{still}</section>"
    )
