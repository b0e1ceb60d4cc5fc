"""The error budget as a gate: forward moves wait while the burn rate holds, or cannot be
read; rollbacks, kills and pauses never wait for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core.common import ConfigError
from controller.core.machine.machine import step
from controller.core.machine.queries import planned_queries, reading_names
from controller.core.machine.sourced import sourced_tests
from controller.core.metrics_source.readings import Answer, FlagReadings, Series, Taken
from controller.core.rollouts import error_budget
from controller.core.rollouts.actions import RecordDecision
from controller.core.rollouts.moving import next_move
from controller.core.rollouts.plan import Plan, parse_plan
from controller.core.rollouts.rollout import (
    CommandInput,
    GateInput,
    Phase,
    Rollout,
    Verdict,
    VerdictKind,
)
from controller.core.wire import ErrorBudget, GateEvidence
from controller.core.wire.messages import CommandAction

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
BURN = (
    'sum(rate(http_errors_total{service="checkout"}[{{window}}]))'
    ' / sum(rate(http_requests_total{service="checkout"}[{{window}}])) / 0.001'
)


def plan(**burn: Any) -> Plan:
    return parse_plan(
        {
            "stages": [{"percent": 10, "min_duration": "5m"}, {"percent": 100}],
            "guardrails": [{"metric": "error_rate"}],
            "burn_rate": {"query": BURN, "above": 14.4, "windows": ["5m", "1h"], **burn},
            "windows": [],
        }
    )


def rollout(the_plan: Plan | None = None, **extra: Any) -> Rollout:
    return Rollout(
        flag="checkout", rollout_id="r1", plan=the_plan or plan(), phase=Phase.RUNNING,
        stage=0, stage_started_at=T0, salt="s", flag_version=1, stage_versions={0: [1]},
        started_at=T0, updated_at=T0, **extra,
    )  # fmt: skip


# -- the plan ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("burn", "problem"),
    [
        ({"query": "sum(rate(errors_total[5m]))"}, "reads each window through {{window}}"),
        ({"query": 'x{v="{{arm}}"}[{{window}}]'}, "the service's, not an arm's"),
        ({"above": 0}, "burn_rate.above: Input should be greater than 0"),
        ({"above": float("nan")}, "burn_rate.above: Input should be a finite number"),
        ({"windows": []}, "burn_rate.windows: List should have at least 1 item"),
        ({"windows": ["5m", "5m"]}, "burn-rate windows must differ"),
        ({"windows": ["5s"]}, "burn_rate.windows.0: Input should be greater than or equal"),
        ({"windows": ["31d"]}, "burn_rate.windows.0: Input should be less than or equal"),
        ({"windows": ["1m", "5m", "1h", "6h", "1d"]}, "List should have at most 4 items"),
        ({"query": "rate(x[{{window}}]) {{nope}}"}, "burn_rate.query"),
    ],
)
def test_a_burn_rate_that_cannot_work_is_refused_with_its_field(
    burn: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem.replace("{", r"\{").replace("}", r"\}")):
        plan(**burn)


def test_each_window_is_asked_with_window_as_that_window() -> None:
    r = rollout()
    asked = planned_queries(r, NOW)
    assert reading_names(r)[-2:] == ["burn_rate:5m", "burn_rate:1h"]
    for name, span in (("burn_rate:5m", "300s"), ("burn_rate:1h", "3600s")):
        value = next(q for q in asked[name] if q.role == "value")
        assert value.promql == BURN.replace("{{window}}", span)
        assert any(q.role == "fresh" for q in asked[name]), "a dark target is seen as such"


# -- what is read ------------------------------------------------------------------


def readings(r: Rollout, burns: dict[str, float | str | None], at: datetime = NOW) -> FlagReadings:
    """``None``: never read; text: what the source answered that cannot be used."""
    key = (r.rollout_id, r.stage, r.stage_started_at)
    taken = {}
    for window, value in burns.items():
        if value is None:
            continue
        answer: Answer | str = value if isinstance(value, str) else Answer((Series((), value),))
        fresh = Answer((Series((), at.timestamp(), at.timestamp()),))
        answers = {("service", "value"): answer, ("service", "fresh"): fresh}
        taken[f"burn_rate:{window}"] = Taken(key, at, answers, dict.fromkeys(answers, "q"))
    return FlagReadings(source="prometheus", taken=taken)


def budget_of(burns: dict[str, float | str | None], at: datetime = NOW) -> ErrorBudget:
    r = rollout()
    sourced = sourced_tests(r, readings(r, burns, at), NOW, max_age=timedelta(minutes=2))
    assert sourced.budget is not None
    assert not sourced.missing, "the gate itself never holds on the burn rate"
    return sourced.budget


@pytest.mark.parametrize(
    ("burns", "holds", "reason"),
    [
        ({"5m": 20.0, "1h": 15.0}, True, "is above 14.4 over every window (5m 20.00, 1h 15.00)"),
        ({"5m": 20.0, "1h": 2.0}, False, "is not above 14.4 over every window (5m 20.00, 1h 2.00)"),
        ({"5m": 1.0, "1h": 15.0}, False, "is not above 14.4 over every window"),
        ({"5m": 14.4, "1h": 14.4}, False, "is not above 14.4"),
        ({"5m": 0.0, "1h": 0.0}, False, "is not above 14.4"),
        ({"5m": None, "1h": 0.0}, True, "over 5m cannot be read: not taken as healthy"),
        ({"5m": 0.0, "1h": "server said 503"}, True, "over 1h cannot be read"),
        ({"5m": 0.0, "1h": -3.0}, True, "over 1h cannot be read"),
        ({"5m": 0.0, "1h": float("nan")}, True, "over 1h cannot be read"),
    ],
)
def test_the_budget_holds_over_every_window_or_when_unread(
    burns: dict[str, float | str | None], holds: bool, reason: str
) -> None:
    budget = budget_of(burns)
    assert budget.holds is holds
    assert budget.reason.startswith("error_budget: ")
    assert reason in budget.reason


def test_a_stale_burn_rate_holds_and_says_how_old() -> None:
    budget = budget_of({"5m": 0.0, "1h": 0.0}, at=NOW - timedelta(minutes=5))
    assert budget.holds
    assert budget.windows == {"5m": None, "1h": None}
    assert budget.problems is not None
    assert "the last reading is 300 s old" in budget.problems["5m"]


def test_the_workbook_tiers_ask_each_window_once() -> None:
    r = rollout(plan(above=None, windows=None))
    names = ["burn_rate:5m", "burn_rate:30m", "burn_rate:1h", "burn_rate:6h", "burn_rate:3d"]
    assert reading_names(r)[-5:] == names
    asked = planned_queries(r, NOW)
    value = next(q for q in asked["burn_rate:3d"] if q.role == "value")
    assert value.promql == BURN.replace("{{window}}", "259200s")


def test_a_tier_with_a_stale_window_holds_and_names_it() -> None:
    r = rollout(plan(above=None, windows=None))
    fresh = readings(r, {"5m": 0.0, "30m": 0.0, "1h": 0.0, "6h": 0.0})
    stale = readings(r, {"3d": 0.0}, at=NOW - timedelta(minutes=5))
    both = FlagReadings(source="prometheus", taken={**fresh.taken, **stale.taken})
    budget = sourced_tests(r, both, NOW, max_age=timedelta(minutes=2)).budget
    assert budget is not None
    assert budget.holds
    assert "over 3d cannot be read (tier 3 of 3): not taken as healthy" in budget.reason
    assert [t.burns for t in budget.tiers or []] == [False, False, None]
    assert budget.problems is not None
    assert "the last reading is 300 s old" in budget.problems["3d"]


def test_a_plan_without_a_burn_rate_has_no_budget() -> None:
    no_burn = Plan.model_validate(plan().model_dump() | {"burn_rate": None})
    assert error_budget(no_burn, {}) is None


# -- the machine ---------------------------------------------------------------------

BURNING = ErrorBudget(
    holds=True, reason="error_budget: burning", above=14.4, windows={"5m": 20.0, "1h": 16.0}
)
EASED = BURNING.model_copy(update={"holds": False, "reason": "error_budget: not burning"})


def gate(kind: VerdictKind, budget: ErrorBudget | None, now: datetime = NOW) -> GateInput:
    evidence = GateEvidence(error_budget=budget) if budget else GateEvidence()
    return GateInput(Verdict(kind, f"gate says {kind.value}", None, evidence), now)


def test_an_advance_waits_while_the_budget_burns_with_one_wait_decision() -> None:
    waiting, actions = step(rollout(), gate(VerdictKind.ADVANCE, BURNING))
    assert waiting is not None
    assert (waiting.stage, waiting.window_wait) == (0, "error_budget: burning")
    [wait] = [a for a in actions if isinstance(a, RecordDecision)]
    assert (wait.action, wait.reason) == ("wait", "error_budget: burning")
    assert wait.evidence.error_budget == BURNING
    again, more = step(waiting, gate(VerdictKind.ADVANCE, BURNING, NOW + timedelta(minutes=1)))
    assert again == waiting
    assert more == [], "one decision when the wait begins, not one per gate"
    shown = next_move(waiting, None, NOW)
    assert shown is not None
    assert (shown.why, shown.at) == ("error_budget: burning", None)


def test_the_rollout_goes_on_at_the_first_gate_after_the_burn_stops() -> None:
    waiting, _ = step(rollout(), gate(VerdictKind.ADVANCE, BURNING))
    assert waiting is not None
    moved, actions = step(waiting, gate(VerdictKind.ADVANCE, EASED, NOW + timedelta(minutes=2)))
    assert moved is not None
    assert (moved.stage, moved.window_wait) == (1, None)
    assert [a.action for a in actions if isinstance(a, RecordDecision)] == ["advance"]


def test_a_hold_after_the_burn_stops_clears_the_wait_and_keeps_the_stage() -> None:
    waiting, _ = step(rollout(), gate(VerdictKind.ADVANCE, BURNING))
    assert waiting is not None
    held, actions = step(waiting, gate(VerdictKind.HOLD, EASED, NOW + timedelta(minutes=2)))
    assert held is not None
    assert (held.stage, held.window_wait, actions) == (0, None, [])
    still, _ = step(waiting, gate(VerdictKind.HOLD, BURNING, NOW + timedelta(minutes=2)))
    assert still == waiting


@pytest.mark.parametrize("budget", [BURNING, None])
def test_a_rollback_never_waits_for_the_budget(budget: ErrorBudget | None) -> None:
    rolled, _ = step(rollout(), gate(VerdictKind.ROLLBACK, budget))
    assert rolled is not None
    assert rolled.phase is Phase.ROLLED_BACK


@pytest.mark.parametrize(
    ("action", "phase"),
    [
        (CommandAction.KILL, Phase.KILLED),
        (CommandAction.PAUSE, Phase.PAUSED),
        (CommandAction.ROLLBACK, Phase.ROLLED_BACK),
    ],
)
def test_kills_pauses_and_rollbacks_pass_a_rollout_waiting_on_the_budget(
    action: CommandAction, phase: Phase
) -> None:
    waiting, _ = step(rollout(), gate(VerdictKind.ADVANCE, BURNING))
    command = CommandInput(action=action, flag="checkout", command_id="c", actor="ana", now=NOW)
    after, _ = step(waiting, command)
    assert after is not None
    assert after.phase is phase
