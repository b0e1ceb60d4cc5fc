"""The rollout state machine: ``step(state, input) -> (new_state, actions)``.

Pure: it decides, the engine acts (saves the state, then performs the actions
in order). Transitions, by input and phase (``-`` = no rollout or a finished
one; anything not listed is rejected with a reason and changes nothing):

=========== ======================= =========================================
input       from                    to
=========== ======================= =========================================
start       -                       running(stage 0); with ``at`` (or the plan's
                                    ``time_box.starts_at``) in the future →
                                    pending (scheduled), nothing served
tick        pending                 from ``scheduled_at`` → running(stage 0)
                                    inside the windows (else it waits)
tick        pending, running,       from the plan's ``time_box.ends_at`` →
            paused, completed       aborted (the flag off, once)
gate        running, paused         rollback verdict → rolled_back
gate        running                 pause verdict → paused(reason)
gate        running                 advance → running(stage+1) | completed |
                                    paused(awaiting_approval) if the stage
                                    needs approval
gate        running                 hold → unchanged (no decision recorded)
gate        running, watching       rollback verdict with ``on_regression: alert``
                                    → unchanged, alert "guardrail" (once);
                                    advance → completed once the watch ended,
                                    else unchanged
gate        any                     ``advisor_alert`` → alert "advisor_unavailable",
                                    whatever the verdict does
opinion     any (same rollout)      unchanged; records the advisory opinion on
                                    the advance a gate already made
gate        running, paused         a dry-run guardrail would have acted → alert
                                    "guardrail" (info, once per stage), whatever
                                    the verdict does; it never acts itself
tick        running                 past max_duration → alert "stuck" (once), or
                                    as the policy's ``inconclusive`` says
tick        completed               past ``stale_after`` → alert "stale_flag" (once)
pause       running                 paused(operator)
resume      paused (not approval)   running
approve     paused(awaiting_approval advance, as an approved gate would
            or advisor_objection)
promote     running, paused         running(stage+1) | watching | completed;
                                    ``to_end`` → completed
rollback    running, paused         rolled_back
abort       running, paused,        aborted (of a pending one: the scheduled
            pending                 start is cancelled, it never fires)
kill        running, paused,        killed
            completed, pending
monitor     running, paused,        killed
down        completed
monitor up  killed                  unchanged; records the recovery (the flag
                                    stays off until a person starts it again)
refused     any, or none            unchanged; the rejected decision with the
                                    reason (a command that failed
                                    authentication, was replayed or has a plan
                                    that cannot work)
drift       running                 paused(backend_drift), alert: a person changed
                                    what the flag platform serves
=========== ======================= =========================================

A verdict a health trigger stands behind (``verdict.applied``: a guardrail
regression, a sample-ratio mismatch, no traffic, units in both arms) and the
other triggers (past ``max_duration``, the advisor unavailable, drift) act as
the plan's health policy says (:mod:`controller.core.machine.health`): rollback,
hold (pause with the reason and an alert) or warn (one alert per stage, the
rollout goes on); the table shows the defaults.

Forward moves — a gate's advance, the end of a watch, a scheduled start,
``promote`` and ``approve`` — happen only inside the release windows (see
:mod:`controller.core.machine.waiting`): outside them a gate's advance waits with
``window_wait`` set and one ``wait`` decision, and ``promote`` and
``approve`` are rejected with the reason and when the window opens.
Rollback, kill, abort, pause and every automatic protection are never
windowed, nor is the end of a time box (:mod:`controller.core.machine.scheduling`).
A gate's advance and the end of a watch also wait while the plan's error budget
burns (``burn_rate``), with a reason that begins ``error_budget``, and while a flag the
plan requires is not served to its audience (the gate input's ``prerequisite``), with a
reason that begins ``prerequisite``; nothing else does.

A promote that leaves the rollout running, a pause and a resume by an operator are
kept with it (``steered``), as the decision that finished it is (``ended``).

Advancing past the last stage of a plan with a ``watch`` enters the watch
instead of completing: still running at the last stage, with the holdback on
control (``watch_until`` set); advancing again completes.

Evidence counted for a stage after it passed (partitions that lagged or were held,
a Collector's retry, an app's buffer flushed after an outage) is tested with the
same guardrails (:func:`late_regression`); a regression there is the gate's
verdict, and acts as the plan's policy says, with evidence that the data came late.

Every accepted transition publishes the flag state (with a new flag version)
and records a decision; rollbacks, kills and automatic pauses raise alerts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime

from controller.core.machine.approving import revoked
from controller.core.machine.final_look import looked
from controller.core.machine.gate import evaluate
from controller.core.machine.health import act, named, outage_alert, overdue
from controller.core.machine.operator import command
from controller.core.machine.scheduling import due, time_box_over
from controller.core.machine.transitions import (
    Cause,
    Step,
    advance,
    complete,
    decision,
    kill,
    pause,
    record_opinion,
    recovered,
    refused,
    roll_back,
    with_ending,
    with_steering,
)
from controller.core.machine.waiting import budget_eased, forward
from controller.core.machine.watching import stale_reminder, watch_alert, watch_evidence
from controller.core.reading import INCOHERENT, at_stage, rollout_stage
from controller.core.rollouts import (
    Action,
    Advice,
    Applied,
    BackendDriftInput,
    CommandInput,
    CommandRefused,
    GateInput,
    Input,
    KeysRevokedInput,
    MonitorDownInput,
    MonitorUpInput,
    Opinion,
    OpinionInput,
    PauseReason,
    Phase,
    RaiseAlert,
    Rollout,
    TickInput,
    Unavailable,
    Verdict,
    VerdictKind,
    action_for,
    incoherence,
)
from controller.core.stats import FlagAggregates
from controller.core.wire import JsonObject, LateEvidence, RolloutEvidence


def step(state: Rollout | None, event: Input) -> Step:
    """Decide what ``event`` does to ``state``; ``state`` is None before the first start."""
    return with_ending(state, with_steering(state, event, _step(state, event)))


def _step(state: Rollout | None, event: Input) -> Step:
    if isinstance(event, CommandInput):
        return command(state, event)
    if isinstance(event, CommandRefused):
        return refused(state, event)
    if state is None:
        return None, []
    if isinstance(event, GateInput):
        return _gate(state, event)
    if isinstance(event, OpinionInput):  # after its gate decided: a record, nothing more
        return record_opinion(state, event)
    return _tick(state, event) if isinstance(event, TickInput) else _outside(state, event)


def _outside(
    state: Rollout, event: MonitorDownInput | MonitorUpInput | BackendDriftInput | KeysRevokedInput
) -> Step:
    """What the world reports: uptime monitors, a person's change on the flag platform, and
    operator keys revoked."""
    if isinstance(event, KeysRevokedInput):
        return revoked(state, event)
    if isinstance(event, MonitorUpInput):
        return recovered(state, event)
    if isinstance(event, BackendDriftInput):
        if state.phase is not Phase.RUNNING:
            return state, []
        why = Cause("backend", event.what, None, event.details)
        return act(state, event.now, action_for(state.plan.health_words, "backend_drift"), why)
    return _monitor_down(state, event)


def _monitor_down(state: Rollout, event: MonitorDownInput) -> Step:
    """Killed; or, held (a deploy of its service aborted), a running rollout paused."""
    details = RolloutEvidence(monitor=event.monitor, incident=event.incident_id)
    if not event.hold:
        why = Cause("monitor", f"monitor {event.monitor} is down", None, details)
        return kill(state, event.now, why)
    if state.phase is not Phase.RUNNING:
        return state, []
    why = Cause("monitor", f"monitor {event.monitor} is down: hold", None, details)
    return pause(state, event.now, PauseReason.MONITOR, why, alert="monitor_hold")


# -- gate verdicts -------------------------------------------------------------------


def _gate(state: Rollout, event: GateInput) -> Step:
    if state.phase is Phase.COMPLETED:
        return _late_after_completion(state, event)
    state, trial = _dry_run_alert(state, event)
    new, actions = _verdict(state, event)
    return new, trial + actions + outage_alert(state, event, actions)


def _late_after_completion(state: Rollout, event: GateInput) -> Step:
    """A completed rollout whose late evidence regressed: one critical alert naming the flag
    and the stage, and the state marked, so a pipeline that follows holds its next step."""
    late = event.verdict.evidence.late
    if late is None or late.stage is None or state.late_regression is not None:
        return state, []
    reason = event.verdict.reason[:500]
    marked = state.model_copy(update={"late_regression": reason, "updated_at": event.now})
    summary = f"{state.flag} completed, but {reason}"
    details: JsonObject = {"stage": late.stage, "late": late.model_dump(mode="json")}
    details |= {"evidence": event.verdict.evidence.wire()}
    return marked, [RaiseAlert("late_regression", "critical", summary[:500], details)]


def _dry_run_alert(state: Rollout, event: GateInput) -> tuple[Rollout, list[Action]]:
    """One alert per stage when a dry-run guardrail would have acted; it never acts."""
    breaches = event.verdict.dry_run_breaches
    if not (breaches and state.phase.active) or state.dry_run_alerted:
        return state, []
    alerted = state.model_copy(update={"dry_run_alerted": True, "updated_at": event.now})
    summary = (
        f"{state.flag}: dry-run guardrail {', '.join(breaches)} would have acted at "
        f"{rollout_stage(state)} (no action)"
    )
    trial: JsonObject = {
        m: said.model_dump() for m, said in (event.verdict.evidence.dry_run or {}).items()
    }
    details: JsonObject = {"stage": state.stage, "dry_run": trial, "breaches": list(breaches)}
    details |= at_stage(state)
    return alerted, [RaiseAlert("guardrail", "info", summary[:500], details)]


def _verdict(state: Rollout, event: GateInput) -> Step:
    verdict = event.verdict
    if verdict.applied is not None:  # a look that showed harm is spent, whatever is done
        return _triggered(looked(state, event), event, verdict.applied)
    if state.watching and state.phase.active:
        watched = _watch_verdict(state, event)
        if watched is not None:
            return watched
    if verdict.kind is VerdictKind.ROLLBACK and state.phase.active:
        return roll_back(state, event.now, Cause.gate(verdict))
    budget, state = verdict.evidence.error_budget, looked(state, event)
    if state.phase is not Phase.RUNNING or verdict.kind is VerdictKind.HOLD:
        return budget_eased(state, event.now, budget, event.prerequisite), []
    if verdict.kind is VerdictKind.PAUSE:
        reason = verdict.pause_reason or PauseReason.GUARDRAIL
        return pause(state, event.now, reason, Cause.gate(verdict))
    return forward(
        state,
        event.now,
        event.team_windows,
        lambda ready: _advance_with_advice(ready, event),
        budget=budget,
        held=event.prerequisite,
    )


def _triggered(state: Rollout, event: GateInput, applied: Applied) -> Step:
    """A verdict a health trigger stands behind: what the plan's policy says.

    A regression the watch only alerts on keeps the watch's own alert (once per watch).
    """
    watched = state.watching and applied.trigger == "guardrail_regression"
    if watched and applied.action == "warn" and state.phase.active:
        alerted, actions = watch_alert(state, event.now, event.verdict)
        return alerted, list(actions)
    return act(state, event.now, applied, Cause.gate(event.verdict))


def _advance_with_advice(state: Rollout, event: GateInput) -> Step:
    """The statistics say advance; the advisor may only make that more cautious.

    An unavailable advisor lets the statistics decide (``warn``), or pauses or rolls
    back, as the plan's policy says.
    """
    if state.advisor_hold_until is not None and event.now < state.advisor_hold_until:
        return state, []
    why = Cause.gate(event.verdict)
    if event.advice is not None:
        said = why.evidence.merged(advisor=event.advice.evidence())
        why = Cause("gate", why.reason, None, said)
    if isinstance(event.advice, Unavailable):
        applied = action_for(state.plan.health_words, "advisor_unavailable")
        if applied.action != "warn":
            down = f"the advisor is unavailable: {event.advice.cause}"[:500]
            return act(state, event.now, applied, Cause("advisor", down, None, why.evidence))
        why = named(why, applied)
    given = event.advice.advice if isinstance(event.advice, Opinion) else None
    opinion = given.action if given else None
    if event.advisor_mode == "gating" and opinion == "hold":
        held = state.model_copy(
            update={"advisor_hold_until": event.now + event.advisor_hold, "updated_at": event.now}
        )
        return held, [decision(state, held, "hold", dataclasses.replace(why, kind="advisor"))]
    if event.advisor_mode == "gating" and opinion == "rollback":
        why = dataclasses.replace(why, reason=f"the advisor objects{_objection(given)}")
        return pause(state, event.now, PauseReason.ADVISOR_OBJECTION, why)
    if state.plan.stages[state.stage].approval:
        approval = Cause("gate", "the stage needs an operator's approval", None, why.evidence)
        return pause(state, event.now, PauseReason.AWAITING_APPROVAL, approval)
    return advance(state, event.now, why)


def _objection(given: Advice | None) -> str:
    """The advisor's rationale for a rollback, unless incoherent: that still pauses, unquoted."""
    if given is None:
        return ""
    incoherent = incoherence(given)
    return f" ({INCOHERENT}: {incoherent})" if incoherent else f": {given.rationale[:200]}"


def _watch_verdict(state: Rollout, event: GateInput) -> Step | None:
    """What the watch decides itself, or None to let the verdict act as in a stage."""
    verdict, watch = event.verdict, state.plan.watch
    if verdict.kind is VerdictKind.ROLLBACK and watch and watch.on_regression == "alert":
        alerted, actions = watch_alert(state, event.now, verdict)
        return alerted, list(actions)
    if verdict.kind is not VerdictKind.ADVANCE or state.phase is not Phase.RUNNING:
        return None
    if state.watch_until is not None and event.now < state.watch_until:
        return state, []
    evidence = RolloutEvidence.of_gate(verdict.evidence).merged(**watch_evidence(state))
    why = Cause("gate", "the watch ended clean", None, evidence)
    budget = verdict.evidence.error_budget
    return forward(
        state,
        event.now,
        event.team_windows,
        lambda s: complete(s, event.now, why),
        budget=budget,
        held=event.prerequisite,
    )


def _tick(state: Rollout, event: TickInput) -> Step:
    ended = time_box_over(state, event.now)
    if ended is not None:
        return ended
    if state.phase is Phase.PENDING:
        return due(state, event)
    if state.phase is Phase.COMPLETED:
        stale, reminder = stale_reminder(state, event)
        return stale, list(reminder)
    return overdue(state, event)


def passed_stages(rollout: Rollout) -> dict[int, list[int]]:
    """The stages ``rollout`` has passed (every stage once it completed), each with the flag
    versions whose events count for it; stages that published none are left out."""
    last = len(rollout.plan.stages) if rollout.phase is Phase.COMPLETED else rollout.stage
    return {
        stage: sorted(versions)
        for stage, versions in sorted(rollout.stage_versions.items())
        if stage < last and versions
    }


def late_regression(
    rollout: Rollout, passed: Mapping[int, FlagAggregates], now: datetime
) -> Verdict | None:
    """The first guardrail regression in the evidence of a stage already passed, as the
    gate's verdict on that stage with evidence that its data came late; None if none.

    At the time a stage passed none of its guardrails regressed, so a regression now is
    in evidence counted since. Each stage is tested as the gate tested it (its percent,
    its versions, the same sequential tests, valid at any look).
    """
    for stage, data in sorted(passed.items()):
        # A passed stage had its final look: only the always-valid boundary looks again.
        then = rollout.model_copy(
            update={"stage": stage, "watch_until": None, "final_look_at": now}
        )
        verdict = evaluate(then, data, now)
        applied = verdict.applied
        if applied is None or applied.trigger != "guardrail_regression":
            continue
        where = rollout_stage(then)
        late = LateEvidence(
            stage=stage,
            flag_versions=sorted(data.versions),
            why=f"events of {where} counted after it passed show a regression",
        )
        evidence = verdict.evidence.model_copy(update={"late": late})
        reason = f"late evidence of {where}: {verdict.reason}"[:500]
        return dataclasses.replace(verdict, reason=reason, evidence=evidence)
    return None
