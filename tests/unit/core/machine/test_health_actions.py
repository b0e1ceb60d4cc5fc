"""The health-action policy in the machine: every trigger x rollback / hold / warn.

Each row gives a trigger its input (a gate verdict naming it, a late timer, an
unavailable advisor, a drift) under a plan whose ``health_policy`` chooses the
action, and checks the decision, the alert and the evidence naming the policy.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.core.machine import health, step
from controller.core.machine.gate import evaluate
from controller.core.rollouts.actions import Action, PublishFlagState, RaiseAlert, RecordDecision
from controller.core.rollouts.advice import Unavailable
from controller.core.rollouts.plan import parse_plan
from controller.core.rollouts.policy import TRIGGERS, HealthAction, PauseReason, Trigger, action_for
from controller.core.rollouts.rollout import (
    BackendDriftInput,
    CommandInput,
    GateInput,
    Input,
    Phase,
    Rollout,
    TickInput,
    Verdict,
    VerdictKind,
)
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.wire import GateEvidence, RolloutEvidence
from controller.core.wire.messages import CommandAction
from tests.support.documents import as_read
from tests.unit.core.machine.test_machine import NOW, T0, cmd, rollout, summarize

ACTIONS: tuple[HealthAction, ...] = ("rollback", "hold", "warn")
GATED: tuple[Trigger, ...] = (
    "guardrail_regression",
    "sample_ratio_mismatch",
    "units_in_both_arms",
    "no_traffic",
)
DOWN = Unavailable("timed out after 5 s", 5000.0)


def running(trigger: Trigger, action: HealthAction) -> Rollout:
    """Stage 1 of 3 (50%, 30 minutes at most), under a plan that says ``action``."""
    plan = parse_plan(
        {
            "stages": [
                {"percent": 1, "min_duration": "5m"},
                {"percent": 50, "min_duration": "5m", "max_duration": "30m"},
                {"percent": 100},
            ],
            "guardrails": [{"metric": "error_rate"}],
            "health_policy": {trigger: action},
        }
    )
    return rollout(Phase.RUNNING).model_copy(update={"plan": plan})


def trigger_input(state: Rollout, trigger: Trigger) -> Input:
    """What makes ``trigger`` fire for ``state``, as the daemon would hand it over."""
    if trigger in GATED:
        index = 0 if trigger == "guardrail_regression" else None
        applied = action_for(state.plan.health_words, trigger, guardrail=index)
        return GateInput(health.verdict(applied, f"{trigger} seen", GateEvidence(breach="x")), NOW)
    if trigger == "inconclusive":
        return TickInput(T0 + timedelta(minutes=31))
    if trigger == "advisor_unavailable":
        verdict = Verdict(
            VerdictKind.ADVANCE, "the stage is complete", None, GateEvidence(breach="x")
        )
        return GateInput(verdict, NOW, advice=DOWN, advisor_mode="gating", advisor_alert=True)
    return BackendDriftInput(
        "changed by hand: rollout 50 -> 20", NOW, RolloutEvidence(changes=["rollout"])
    )


# (trigger, action) -> (phase after, summary of actions); the evidence is checked below.
EXPECTED: dict[tuple[Trigger, HealthAction], tuple[Phase, str]] = {
    **{(t, "rollback"): (Phase.ROLLED_BACK, "rollback+alert:rollback") for t in TRIGGERS},
    **{
        (t, "hold"): (Phase.PAUSED, f"pause:{health.PAUSE_REASONS[t].value}+alert:{kind}")
        for t, kind in health.ALERT_KINDS.items()
    },
    **{
        (t, "warn"): (Phase.RUNNING, f"warn+alert:{kind}") for t, kind in health.ALERT_KINDS.items()
    },
    # Past max_duration, a warning is the "stuck" alert as before; it never promotes.
    ("inconclusive", "warn"): (Phase.RUNNING, "alert:stuck"),
    # An unavailable advisor with warn: the statistics decide, one alert per outage.
    ("advisor_unavailable", "warn"): (Phase.RUNNING, "advance+alert:advisor_unavailable"),
}


def policy_evidence(actions: list[Action]) -> list[dict[str, Any]]:
    """``evidence.policy`` of each decision and ``details.policy`` of each alert that has one."""
    found: list[Any] = []
    for a in actions:
        where = a.evidence.wire() if isinstance(a, RecordDecision) else getattr(a, "details", {})
        if health.POLICY in where:
            found.append(where[health.POLICY])
    return found


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_each_trigger_takes_the_action_the_policy_names(
    trigger: Trigger, action: HealthAction
) -> None:
    before = running(trigger, action)
    after, actions = step(before, trigger_input(before, trigger))
    want_phase, want_summary = EXPECTED[trigger, action]
    assert after is not None
    assert after.phase is want_phase
    assert summarize(actions) == want_summary
    named = {"trigger": trigger, "action": action, "policy_entry": f"health_policy.{trigger}"}
    evidence = policy_evidence(actions)
    assert evidence, "the decision or the alert names the policy"
    assert all(e == named for e in evidence)
    alerts = [a for a in actions if isinstance(a, RaiseAlert)]
    assert len(alerts) == 1
    if action == "rollback":
        assert alerts[0].severity == "critical"
        assert PublishFlagState() in actions
        assert after.flag_version == before.flag_version + 1
    if action == "hold":
        assert after.pause_reason is health.PAUSE_REASONS[trigger]
        assert alerts[0].severity == "warning"
    if action == "warn" and trigger != "advisor_unavailable":
        assert PublishFlagState() not in actions  # the flag serves what it served
        assert after.flag_version == before.flag_version


@pytest.mark.parametrize("trigger", [t for t in TRIGGERS if t != "advisor_unavailable"])
def test_a_warning_is_given_once_per_stage(trigger: Trigger) -> None:
    before = running(trigger, "warn")
    warned, _ = step(before, trigger_input(before, trigger))
    assert warned is not None
    again, more = step(warned, trigger_input(warned, trigger))
    assert (again, more) == (warned, [])
    advanced, _ = step(warned, GateInput(Verdict(VerdictKind.ADVANCE, "ready"), NOW))
    assert advanced is not None
    assert advanced.stage == 2
    assert advanced.warned == []
    assert not advanced.stuck_alerted


@pytest.mark.parametrize("action", ACTIONS)
def test_an_overdue_stage_never_promotes(action: HealthAction) -> None:
    before = running("inconclusive", action)
    after, actions = step(before, trigger_input(before, "inconclusive"))
    assert after is not None
    assert after.stage == before.stage
    assert not any(isinstance(a, RecordDecision) and a.action == "advance" for a in actions)
    assert after.stuck_alerted
    if action == "hold":  # resumed by an operator, it is not held again in the stage
        resumed, _ = step(after, cmd_resume())
        assert resumed is not None
        assert resumed.phase is Phase.RUNNING
        assert step(resumed, trigger_input(resumed, "inconclusive")) == (resumed, [])


def cmd_resume() -> CommandInput:
    return cmd(CommandAction.RESUME)


@pytest.mark.parametrize("action", ACTIONS)
def test_a_held_rollout_resumes_only_by_an_operator(action: HealthAction) -> None:
    before = running("sample_ratio_mismatch", action)
    after, _ = step(before, trigger_input(before, "sample_ratio_mismatch"))
    assert after is not None
    if action != "hold":
        assert after.pause_reason is None
        return
    assert after.pause_reason is PauseReason.SRM
    ready = GateInput(Verdict(VerdictKind.ADVANCE, "ready"), NOW)
    assert step(after, ready) == (after, [])  # a gate never resumes it
    resumed, actions = step(after, cmd_resume())
    assert resumed is not None
    assert resumed.phase is Phase.RUNNING
    assert summarize(actions) == "resume"


def test_a_paused_rollout_is_warned_about_and_stays_paused() -> None:
    before = running("guardrail_regression", "warn").model_copy(
        update={"phase": Phase.PAUSED, "pause_reason": PauseReason.OPERATOR}
    )
    after, actions = step(before, trigger_input(before, "guardrail_regression"))
    assert after is not None
    assert after.phase is Phase.PAUSED
    assert summarize(actions) == "warn+alert:guardrail"


def test_the_advisor_outage_alert_is_left_to_the_policy_that_acted() -> None:
    before = running("advisor_unavailable", "hold")
    _, actions = step(before, trigger_input(before, "advisor_unavailable"))
    kinds = [a.kind for a in actions if isinstance(a, RaiseAlert)]
    assert kinds == ["advisor_unavailable"]  # the pause's, not a second outage alert
    (pause,) = [a for a in actions if isinstance(a, RecordDecision)]
    assert pause.kind == "advisor"
    assert DOWN.cause in pause.reason


# -- the gate names the trigger and takes its verdict's kind from the policy ---------------


def arm(units: int, requests: int = 0, errors: int = 0) -> ArmAggregate:
    return ArmAggregate(units=units, exposures=units, requests=requests, errors=errors)


def aggregates(treatment: ArmAggregate, control: ArmAggregate) -> FlagAggregates:
    return FlagAggregates("checkout", frozenset({7}), treatment, control)


QUIET = aggregates(ArmAggregate(), ArmAggregate())
SKEWED = aggregates(arm(2000), arm(400))  # at 50%: far from an even split
REGRESSED = aggregates(arm(3000, 3000, 600), arm(3000, 3000, 30))

GATE_CASES: list[tuple[Trigger, FlagAggregates, dict[HealthAction, tuple[VerdictKind, Any]]]] = [
    (
        "guardrail_regression",
        REGRESSED,
        {
            "rollback": (VerdictKind.ROLLBACK, None),
            "hold": (VerdictKind.PAUSE, PauseReason.GUARDRAIL),
            "warn": (VerdictKind.HOLD, None),
        },
    ),
    (
        "sample_ratio_mismatch",
        SKEWED,
        {
            "rollback": (VerdictKind.ROLLBACK, None),
            "hold": (VerdictKind.PAUSE, PauseReason.SRM),
            "warn": (VerdictKind.HOLD, None),
        },
    ),
    (
        "no_traffic",
        QUIET,
        {
            "rollback": (VerdictKind.ROLLBACK, None),
            "hold": (VerdictKind.PAUSE, PauseReason.NO_TRAFFIC),
            "warn": (VerdictKind.HOLD, None),
        },
    ),
]


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize(("trigger", "data", "kinds"), GATE_CASES, ids=lambda c: str(c)[:24])
def test_the_gate_names_the_trigger_and_the_policy(
    trigger: Trigger,
    data: FlagAggregates,
    kinds: dict[HealthAction, tuple[VerdictKind, Any]],
    action: HealthAction,
) -> None:
    state = running(trigger, action)
    verdict = evaluate(state, data, NOW)  # an hour in: past the grace and the minimum
    assert (verdict.kind, verdict.pause_reason) == kinds[action]
    assert verdict.applied is not None
    assert verdict.applied.trigger == trigger
    assert as_read(verdict.evidence)[health.POLICY] == {
        "trigger": trigger,
        "action": action,
        "policy_entry": f"health_policy.{trigger}",
    }


def test_the_defaults_name_the_default_entry() -> None:
    state = running("no_traffic", "hold").model_copy(
        update={"plan": parse_plan({"stages": [{"percent": 50}, {"percent": 100}]})}
    )
    verdict = evaluate(state, QUIET, NOW)
    assert verdict.kind is VerdictKind.PAUSE
    assert as_read(verdict.evidence)[health.POLICY]["policy_entry"] == "default"


# -- the drift sync: whether the machine's reaction already alerted --------------------------


@pytest.mark.parametrize("action", ACTIONS)
def test_the_drift_sync_knows_the_machine_alerted(action: HealthAction) -> None:
    before = running("backend_drift", action)
    after, _ = step(before, trigger_input(before, "backend_drift"))
    assert after is not None
    assert health.drift_alerted(before, after)
    assert not health.drift_alerted(before, before)
