"""The console's pipeline page: a flag's environments in order, the gate before each, approvals.

Pure: the view ``GET /pipelines/{flag}`` serves
(:func:`controller.core.reading.pipeline_view`) in, an HTML fragment out. Each
environment shows its step's status and its rollout (phase, stage, what it
serves), linked to that environment's rollout page; between two environments
the gate before the later one (soak, approvals N of M per role, release
windows) and, for the step that starts next, everything it still waits for;
a step needing approvals lists who approved and when, and how many are still
missing from which role. Every value passes through :func:`esc`.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.console.pages import esc, flag_url

STEP_CLASS = {
    "completed": "passed",
    "running": "current",
    "rolled_back": "failed",
    "killed": "failed",
    "aborted": "ended",
}


def pipeline_detail(view: Mapping[str, object]) -> str:
    """The pipeline page's fragment: a heading, where the run stands, then each environment."""
    flag, found = view["flag"], _part(view.get("next"))
    steps = _parts(view["environments"])
    items: list[str] = []
    for i, step in enumerate(steps):
        if i:
            items.append(_gate(str(steps[i - 1]["environment"]), step, found))
        items.append(_environment(step))
    stopped = f" at {view['stopped_at']}" if view.get("stopped_at") else ""
    return (
        f'<h1 data-flag="{esc(flag)}">Pipeline <code>{esc(view["pipeline"])}</code>'
        f" for {esc(flag)}</h1>"
        f'<p class="verdict" data-phase="{esc(view["phase"])}">'
        f"{esc(str(view['phase']).capitalize())}{esc(stopped)}: {esc(_next_text(view))}</p>"
        f'<dl class="summary"><dt>run</dt><dd><code>{esc(view["run_id"])}</code></dd>'
        f"<dt>started</dt><dd>{esc(view.get('started_at') or '-')}</dd>"
        f"<dt>updated</dt><dd>{esc(view.get('updated_at') or '-')}</dd></dl>"
        f'<h2 id="h-environments">Environments, in order</h2>'
        f'<ol class="pipeline" aria-labelledby="h-environments">{"".join(items)}</ol>'
    )


def _part(value: object) -> Mapping[str, object] | None:
    """A part of the view that is an object, or None."""
    return value if isinstance(value, Mapping) else None


def _parts(value: object) -> list[Mapping[str, object]]:
    """The objects of a part of the view that is a list."""
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _texts(value: object) -> list[str]:
    """The items of a part of the view that is a list, as text."""
    return [str(v) for v in value] if isinstance(value, list) else []


def _count(value: object) -> int:
    """A number of the view as a count; 0 for what is none."""
    return int(value) if isinstance(value, int | float) else 0


def _next_text(view: Mapping[str, object]) -> str:
    """What happens next: the step that starts next and what it waits for, else where it is."""
    found = _part(view.get("next"))
    if not found:
        steps = _parts(view["environments"])
        running = [e["environment"] for e in steps if e["status"] == "running"]
        if view["phase"] == "running" and running:
            return f"{running[-1]} runs, the last environment to start"
        return "nothing more starts"
    if found["open"]:
        return f"{found['environment']} may start now"
    return f"{found['environment']} waits for " + "; ".join(_texts(found["waiting_for"]))


def _environment(step: Mapping[str, object]) -> str:
    env, status = step["environment"], str(step["status"])
    key, rollout = step.get("key"), _part(step.get("rollout"))
    name = esc(env)
    if key and step.get("rollout_id"):
        name = f'<a href="{esc(flag_url(str(key)))}">{name}</a>'
    shown = "-"
    if rollout:
        at = f" at {rollout['label']}" if rollout.get("label") else ""
        percent = rollout["percent"]
        served = f"{percent:g}" if isinstance(percent, int | float) else str(percent)
        shown = f"{rollout['phase']}{at}, serving {served}%"
    ending = f"<dt>ended</dt><dd>{esc(step['ending'])}</dd>" if step.get("ending") else ""
    return (
        f'<li class="environment {STEP_CLASS.get(status, "pending")}"'
        f' data-environment="{esc(env)}" data-status="{esc(status)}">'
        f"<h3>{name}</h3>"
        f'<dl class="summary"><dt>step</dt><dd class="status">{esc(status)}</dd>'
        f'<dt>rollout</dt><dd class="rollout">{esc(shown)}</dd>'
        f"<dt>plan</dt><dd>{esc(step.get('plan') or '-')}</dd>{ending}</dl>"
        f"{_approvals(_part(step.get('approvals')))}</li>"
    )


def _gate(before: str, step: Mapping[str, object], found: Mapping[str, object] | None) -> str:
    """The gate before ``step``; for the step that starts next, what it still waits for."""
    env = step["environment"]
    waits, is_next = "", found is not None and found["environment"] == env
    if found is not None and is_next:  # found, for the type checker
        lines = "".join(f"<li>{esc(w)}</li>" for w in _texts(found["waiting_for"]))
        waits = f'<ul class="waits">{lines}</ul>' if lines else "<p>Open: it may start now.</p>"
    gate = step.get("gate")
    then = f", then {gate}" if gate and gate != "nothing more" else ""
    state = "next" if is_next else ("passed" if step["status"] != "pending" else "later")
    return (
        f'<li class="gate" data-before="{esc(env)}" data-state="{state}">'
        f"<p>Before {esc(env)}: {esc(before)} completes{esc(then)}</p>"
        f"{waits}</li>"
    )


def _approvals(approvals: Mapping[str, object] | None) -> str:
    if not approvals:
        return ""
    needed = _part(approvals.get("needed")) or {}
    given = _parts(approvals.get("given"))
    missing = sum(_count(n) for n in (_part(approvals.get("missing")) or {}).values())
    roles = "".join(
        f'<p class="role" data-role="{esc(role)}">{esc(role)}:'
        f" {sum(1 for a in given if a.get('role') == role)} of {_count(count)}</p>"
        for role, count in needed.items()
    )
    people = "".join(
        f'<li class="approval" data-key="{esc(a["key_id"])}">{esc(a["operator"])}'
        f" (key {esc(a['key_id'])}, {esc(a['role'])}) at <time>{esc(a['at'])}</time></li>"
        for a in given
    )
    listed = f'<ul class="approvals">{people}</ul>' if people else "<p>No approval yet.</p>"
    still = (
        f'<p class="missing">Still to approve: {esc(approvals["summary"])}</p>'
        if missing
        else '<p class="missing">Every approval given.</p>'
    )
    return (
        f'<section class="approvals" data-missing="{missing}"><h4>Approvals</h4>'
        f"{roles}{listed}{still}</section>"
    )
