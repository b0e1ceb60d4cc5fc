"""A pipeline run's status as lines of text: ``rolloutctl pipeline status``, and the
pipeline part of a report across environments.

Pure: the view ``GET /pipelines/{flag}`` serves (:func:`.pipeline_view`) in,
text out; an older controller's answer (without ``needed``, ``given``,
``gate`` or a stage label) still reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def pipeline_text(view: Mapping[str, Any]) -> str:
    """The run as lines: its phase; each environment's step, rollout, gate and approvals; and
    what the next step waits for."""
    lines = [
        f"pipeline {view['pipeline']} for {view['flag']} (run {view['run_id']}): {view['phase']}"
        + (f" at {view['stopped_at']}" if view.get("stopped_at") else "")
    ]
    for step in view["environments"]:
        lines.append(f"  {step['environment']:<12} {step_line(step)}")
        lines.extend(f"  {'':<12} {line}" for line in approval_lines(step.get("approvals")))
    found = view.get("next")
    if found:
        state = (
            "may start now" if found["open"] else "waits for: " + "; ".join(found["waiting_for"])
        )
        lines.append(f"next: {found['environment']} {state}")
    return "\n".join(lines)


def step_line(step: Mapping[str, Any]) -> str:
    """``running: rollout running at stage 1/2 (5%), serving 5%; gate: soak 1:00:00``."""
    line = str(step["status"])
    rollout = step.get("rollout")
    if rollout:
        at = f" at {rollout['label']}" if rollout.get("label") else ""
        line += f": rollout {rollout['phase']}{at}, serving {rollout['percent']:g}%"
    if step.get("ending"):
        line += f" ({step['ending']})"
    if step.get("gate"):
        line += f"; gate: {step['gate']}"
    return line


def approval_lines(approvals: Mapping[str, Any] | None) -> list[str]:
    """Per role, N of M given (by whom, when), then who still has to approve."""
    if not approvals:
        return []
    needed: dict[str, int] = approvals.get("needed") or {}
    given: list[Mapping[str, object]] = approvals.get("given") or []
    lines = []
    for role, count in needed.items():
        mine = [a for a in given if a.get("role") == role]
        who = ", ".join(f"{a['operator']} (key {a['key_id']}) at {a['at']}" for a in mine)
        lines.append(f"approvals {role}: {len(mine)} of {count}" + (f": {who}" if who else ""))
    if not needed:  # an older controller's answer: names only
        approved = "; ".join(
            f"{role}: {', '.join(names)}" for role, names in approvals["approved"].items() if names
        )
        lines.append(f"approved: {approved}" if approved else "approved: nobody yet")
    missing = any((approvals.get("missing") or {}).values())
    lines.append(f"still to approve: {approvals['summary']}" if missing else approvals["summary"])
    return lines
