"""The watch after a plan's last stage, and the stale-flag reminder.

Pieces of the state machine (:mod:`controller.core.machine.machine`) that only read a
rollout and say what to record or raise; the machine decides when they apply.
"""

from __future__ import annotations

from datetime import datetime

from controller.core.reading import at_stage
from controller.core.rollouts import (
    Phase,
    RaiseAlert,
    RecordDecision,
    Rollout,
    TickInput,
    Verdict,
    Watch,
)
from controller.core.wire import JsonObject, RolloutEvidence, WatchSettings

Step = tuple[Rollout, list[RecordDecision | RaiseAlert]]


def start_watch(state: Rollout, now: datetime, watch: Watch) -> Rollout:
    """The rollout entering its watch: a new flag version, the clock and counts restarted.

    Only events under the holdback count for the watch: before it there was no
    control arm at 100%.
    """
    version = state.flag_version + 1
    return state.model_copy(
        update={
            "phase": Phase.RUNNING,
            "pause_reason": None,
            "watch_until": now + watch.duration,
            "stage_started_at": now,
            "stuck_alerted": False,
            "warned": [],
            "advisor_hold_until": None,
            "flag_version": version,
            "stage_versions": {**state.stage_versions, state.stage: [version]},
            "updated_at": now,
        }
    )


def watch_evidence(state: Rollout) -> dict[str, WatchSettings]:
    """The watch's settings and, in words, what it can see (under ``watch``, when the
    plan has one)."""
    watch = state.plan.watch
    if watch is None:
        return {}
    watched = (
        f"the guardrails against a {watch.holdback_percent:g}% control holdback,"
        " the sample ratio and the uptime monitors"
        if watch.holdback_percent > 0
        else "no control arm: only absolute checks (sample ratio, traffic) and the"
        " uptime monitors; the guardrails cannot be tested"
    )
    settings = WatchSettings(
        duration_s=watch.duration.total_seconds(),
        holdback_percent=watch.holdback_percent,
        on_regression=watch.on_regression,
        watched=watched,
    )
    return {"watch": settings}


def watch_alert(state: Rollout, now: datetime, verdict: Verdict) -> Step:
    """A regression in a watch whose plan alerts instead of rolling back: tell once."""
    if state.watch_alerted:
        return state, []
    new = state.model_copy(update={"watch_alerted": True, "updated_at": now})
    summary = f"{state.flag} regressed during the watch (the plan alerts): {verdict.reason}"
    decision = RecordDecision(
        kind="gate",
        action="watch_regression",
        outcome="recorded",
        reason=verdict.reason[:500],
        phase_before=state.phase.value,
        phase_after=state.phase.value,
        stage=state.stage,
        evidence=RolloutEvidence.of_gate(verdict.evidence).merged(**at_stage(state)),
    )
    details = {"stage": state.stage, "watch": True, **verdict.evidence.wire(), **at_stage(state)}
    return new, [decision, RaiseAlert("guardrail", "critical", summary[:500], details)]


def stale_reminder(state: Rollout, event: TickInput) -> Step:
    """Once a flag has been completed longer than ``stale_after``: remove it from the code."""
    after = event.stale_after
    if after is None or state.stale_alerted or not state.stale(event.now, after):
        return state, []
    new = state.model_copy(update={"stale_alerted": True, "updated_at": event.now})
    days = after.total_seconds() / 86400
    summary = f"{state.flag} completed over {days:g} days ago: remove the flag from the code"
    details: JsonObject = {"completed_at": (state.completed_at or state.updated_at).isoformat()}
    return new, [RaiseAlert("stale_flag", "info", summary, details)]
