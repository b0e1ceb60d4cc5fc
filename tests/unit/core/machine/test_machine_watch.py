"""The watch after 100% and the stale-flag reminder, as a table over every input.

Each state here behaves like one of ``test_machine``'s states (its analog)
except for the cells listed in :data:`OVERRIDES`, so the table says exactly
what the watch and the reminder change.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.core.machine.machine import step
from controller.core.rollouts.actions import PublishFlagState, RaiseAlert, RecordDecision
from controller.core.rollouts.plan_parts import Watch
from controller.core.rollouts.rollout import (
    GateInput,
    Phase,
    Rollout,
    TickInput,
    Verdict,
    VerdictKind,
)
from controller.core.wire import GateEvidence, WatchSettings
from tests.unit.core.machine.test_machine import INPUTS, NOW, PLAN, expected, rollout, summarize

WATCH = Watch(duration=timedelta(hours=2), holdback_percent=1)


def with_watch(phase: Phase, watch: Watch = WATCH, **over: Any) -> Rollout:
    base = rollout(phase, stage=2)
    return base.model_copy(update={"plan": PLAN.model_copy(update={"watch": watch}), **over})


ALERTING = WATCH.model_copy(update={"on_regression": "alert"})
WATCH_STATES: dict[str, tuple[Rollout, str]] = {
    "last-before-watch": (with_watch(Phase.RUNNING), "running-last"),
    "watching": (with_watch(Phase.RUNNING, watch_until=NOW + timedelta(hours=1)), "running-last"),
    "watch-ended": (with_watch(Phase.RUNNING, watch_until=NOW), "running-last"),
    "watching-alerts": (
        with_watch(Phase.RUNNING, ALERTING, watch_until=NOW + timedelta(hours=1)),
        "running-last",
    ),
    "watching-alerted": (
        with_watch(
            Phase.RUNNING, ALERTING, watch_until=NOW + timedelta(hours=1), watch_alerted=True
        ),
        "running-last",
    ),
    "completed-old": (
        with_watch(Phase.COMPLETED, completed_at=NOW - timedelta(days=15)),
        "completed",
    ),
    "completed-old-no-stamp": (  # saved before completed_at existed: updated_at counts
        with_watch(Phase.COMPLETED, updated_at=NOW - timedelta(days=15)),
        "completed",
    ),
    "completed-recent": (
        with_watch(Phase.COMPLETED, completed_at=NOW - timedelta(days=13)),
        "completed",
    ),
    "completed-reminded": (
        with_watch(Phase.COMPLETED, completed_at=NOW - timedelta(days=15), stale_alerted=True),
        "completed",
    ),
}
ALL_INPUTS = {**INPUTS, "tick-stale": TickInput(NOW, timedelta(days=14))}
HELD = ("running", 2, "-")
OVERRIDES: dict[tuple[str, str], tuple[str | None, int | None, str]] = {
    ("last-before-watch", "gate-advance"): ("running", 2, "watch"),
    ("last-before-watch", "promote"): ("running", 2, "promote"),
    ("watching", "gate-advance"): HELD,
    ("watching-alerts", "gate-advance"): HELD,
    ("watching-alerted", "gate-advance"): HELD,
    ("watching-alerts", "gate-rollback"): ("running", 2, "watch_regression+alert:guardrail"),
    ("watching-alerted", "gate-rollback"): HELD,
    ("completed-old", "tick-stale"): ("completed", 2, "alert:stale_flag"),
    ("completed-old-no-stamp", "tick-stale"): ("completed", 2, "alert:stale_flag"),
}
QUIET = ("-", "reject", "alert:stale_flag", "monitor_up", "watch_regression+alert:guardrail")


@pytest.mark.parametrize("input_key", sorted(ALL_INPUTS))
@pytest.mark.parametrize("state_key", sorted(WATCH_STATES))
def test_watch_and_stale_table(state_key: str, input_key: str) -> None:
    before, analog = WATCH_STATES[state_key]
    after, actions = step(before, ALL_INPUTS[input_key])
    want = OVERRIDES.get((state_key, input_key)) or expected(analog, input_key)
    assert (after.phase.value if after else None, after.stage if after else None) == want[:2]
    assert summarize(actions) == want[2]
    assert (PublishFlagState() in actions) == (want[2] not in QUIET)
    if want[2] == "-" or want[2] == "reject":
        assert after == before


def test_entering_the_watch_holds_back_control_and_restarts_the_count() -> None:
    before, _ = WATCH_STATES["last-before-watch"]
    after, actions = step(before, INPUTS["gate-advance"])
    assert after is not None
    assert after.percent == 99
    assert after.watch_until == NOW + timedelta(hours=2)
    assert after.stage_started_at == NOW
    assert after.stage_flag_versions() == {before.flag_version + 1}
    decision = next(a for a in actions if isinstance(a, RecordDecision))
    assert _watch(decision).holdback_percent == 1
    assert "holdback" in _watch(decision).watched


def test_a_clean_watch_completes_at_full_exposure_with_what_was_watched() -> None:
    before, _ = WATCH_STATES["watch-ended"]
    after, actions = step(before, INPUTS["gate-advance"])
    assert after is not None
    assert (after.phase, after.percent, after.watch_until) == (Phase.COMPLETED, 100, None)
    assert after.completed_at == NOW
    decision = next(a for a in actions if isinstance(a, RecordDecision))
    assert decision.reason == "the watch ended clean"
    assert _watch(decision).duration_s == 7200


def test_a_watch_without_holdback_says_only_absolute_checks_are_watched() -> None:
    bare = Watch(duration=timedelta(hours=1), holdback_percent=0)
    before = with_watch(Phase.RUNNING, bare)
    after, actions = step(before, INPUTS["gate-advance"])
    assert after is not None
    assert after.percent == 100
    decision = next(a for a in actions if isinstance(a, RecordDecision))
    assert "no control arm" in _watch(decision).watched


def test_a_regression_in_the_watch_rolls_back_by_default() -> None:
    before, _ = WATCH_STATES["watching"]
    verdict = Verdict(
        VerdictKind.ROLLBACK, "error_rate regressed", None, GateEvidence(breach="error_rate")
    )
    after, actions = step(before, GateInput(verdict, NOW))
    assert after is not None
    assert after.phase is Phase.ROLLED_BACK
    assert after.percent == 0
    alert = next(a for a in actions if isinstance(a, RaiseAlert))
    assert (alert.kind, alert.details["breach"]) == ("rollback", "error_rate")


def test_a_paused_watch_resumes_into_the_watch() -> None:
    watching, _ = WATCH_STATES["watching"]
    paused, _ = step(watching, INPUTS["pause"])
    assert paused is not None
    assert paused.percent == 99  # the holdback stays while paused
    resumed, _ = step(paused, INPUTS["resume"])
    assert resumed is not None
    assert (resumed.phase, resumed.watch_until) == (Phase.RUNNING, watching.watch_until)


def test_stale_reminder_fires_once() -> None:
    before, _ = WATCH_STATES["completed-old"]
    after, actions = step(before, ALL_INPUTS["tick-stale"])
    (alert,) = actions
    assert isinstance(alert, RaiseAlert)
    assert "remove the flag" in alert.summary
    assert after is not None
    assert after.stale_alerted
    assert step(after, ALL_INPUTS["tick-stale"]) == (after, [])
    assert step(before, TickInput(NOW)) == (before, [])  # no threshold given: no reminder


def test_a_watch_needs_the_last_stage_at_full_exposure() -> None:
    with pytest.raises(ValueError, match="last stage at 100%"):
        PLAN.model_validate(
            {"stages": [{"percent": 1}, {"percent": 50}], "watch": {"duration": "PT1H"}}
        )


def _watch(decision: RecordDecision) -> WatchSettings:
    assert decision.evidence.watch is not None
    return decision.evidence.watch
