"""The rollout page's sections on deciding: the advisor's opinions, the gate's decisions
(each with its evidence as published) and the commands the rollout's phase accepts.

Pure; :mod:`controller.console.rollout` lays them out on the page.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import orjson

from controller.console.figures import ts_ms
from controller.console.pages import clock, esc, section
from controller.core.machine import applicable
from controller.core.reading import (
    RolloutView,
    advice_text,
    evidence,
    quotable_rationale,
    where_decided,
)
from controller.core.rollouts import PauseReason, Phase
from controller.core.wire import AdvisorReply, CommandAction, Decision

MAX_EVIDENCE_CHARS = 6000
MAX_RATIONALE_CHARS = 2000
COMMANDS = (
    ("pause", '--reason "investigating"'),
    ("resume", ""),
    ("promote", ""),
    ("approve", ""),
    ("rollback", '--reason "..."'),
    ("abort", '--reason "..."'),
    ("kill", '--reason "..."'),
)
"""Every command a rollout may be sent; the page offers those its phase accepts."""


def advisor_section(decisions: Sequence[Decision]) -> str:
    opinions = [(d, a) for d in decisions if (a := evidence(d).advisor) is not None]
    if not opinions:
        body = '<p class="none">No advisor opinions recorded.</p>'
    else:
        body = (
            '<ul class="advisor">'
            + "".join(_opinion(d, a) for d, a in reversed(opinions))
            + "</ul>"
        )
    return section("advisor", "Advisor", body)


def _opinion(decision: Decision, advice: AdvisorReply) -> str:
    """The advisor's opinion in the words the demo and reports use, then the gate's decision."""
    when = f"<time>{esc(clock(decision.ts))}</time>"
    said = esc(advice_text(advice, rationale_chars=0))
    rationale, _ = quotable_rationale(advice)  # incoherent: advice_text says so instead
    rationale = rationale[:MAX_RATIONALE_CHARS]
    why = (
        f'<br>Advisor\'s rationale: <q class="rationale">{esc(rationale)}</q>'
        if advice.status == "ok" and rationale
        else ""
    )
    return (
        f"<li>{when} {_stage(decision)}: {said}; the gate decided"
        f" <b>{esc(decision.action)}</b>.{why}</li>"
    )


def decisions_section(decisions: Sequence[Decision]) -> str:
    if not decisions:
        body = '<p class="none">No decisions yet.</p>'
    else:
        body = (
            '<ul class="decisions">' + "".join(_decision(d) for d in reversed(decisions)) + "</ul>"
        )
    return section("decisions", "Decisions", body)


def _decision(d: Decision) -> str:
    evidence_json = orjson.dumps(d.evidence.wire(), option=orjson.OPT_INDENT_2).decode()
    if len(evidence_json) > MAX_EVIDENCE_CHARS:
        evidence_json = (
            evidence_json[:MAX_EVIDENCE_CHARS] + "\n… (cut; the full evidence is on the topic)"
        )
    return (
        f'<li class="decision {esc(d.outcome)}" data-action="{esc(d.action)}"'
        f' data-ts="{ts_ms(d.ts)}" id="decision-{esc(d.id)}">'
        f"<time>{esc(clock(d.ts))}</time> {_stage(d)}"
        f" <b>{esc(d.action)}</b> {esc(d.outcome)}"
        f" <small>({esc(d.kind)})</small>: {esc(d.reason)}"
        f"<details><summary>evidence</summary><pre>{esc(evidence_json)}</pre></details></li>"
    )


def _stage(d: Decision) -> str:
    """Where a decision was taken, as alerts, views and reports say it: ``at stage 3/5 (25%)``."""
    return esc(where_decided(d))


def commands_section(status: RolloutView) -> str:
    """The commands this rollout's phase accepts (the state machine's rules), ready to paste."""
    quoted = shlex.quote(status.flag)
    offered = {action.value for action in _applicable(status)}
    lines = "\n".join(
        f"rolloutctl {action} {quoted}{' ' + extra if extra else ''}"
        for action, extra in COMMANDS
        if action in offered
    )
    phase = status.phase.replace("_", " ")[:32]
    body = (
        "<p>The console is read-only. Run these with your own operator key"
        " (<code>ROLLOUTCTL_KEY_ID</code>):</p>"
        f'<pre class="commands">{esc(lines)}</pre>'
        if lines
        else f'<p class="none">The rollout is {esc(phase) or "in no phase"}: no command applies.'
        f" A new rollout starts with <code>rolloutctl start {esc(quoted)} --plan FILE</code>.</p>"
    )
    return section("commands", "Act", body)


def _applicable(status: RolloutView) -> list[CommandAction]:
    phases = {p.value: p for p in Phase}
    reasons = {r.value: r for r in PauseReason}
    phase = phases.get(status.phase)
    return applicable(phase, reasons.get(status.pause_reason or "")) if phase else []
