"""The state machine, as a table: every phase x every input -> state and actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.core.machine.machine import step
from controller.core.machine.operator import applicable
from controller.core.rollouts.actions import Action, PublishFlagState, RaiseAlert, RecordDecision
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.core.rollouts.policy import PauseReason
from controller.core.rollouts.rollout import (
    CommandInput,
    CommandRefused,
    GateInput,
    Input,
    MonitorDownInput,
    MonitorUpInput,
    Phase,
    Rollout,
    TickInput,
    Verdict,
    VerdictKind,
)
from controller.core.wire import DryRun, GateEvidence
from controller.core.wire.messages import CommandAction

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
PLAN = Plan(
    stages=[
        Stage(percent=1, min_duration=timedelta(minutes=5)),
        Stage(percent=50, min_duration=timedelta(minutes=5), max_duration=timedelta(minutes=30)),
        Stage(percent=100, min_duration=timedelta(0)),
    ]
)


def rollout(
    phase: Phase, *, stage: int = 1, reason: PauseReason | None = None, approval: bool = False
) -> Rollout:
    plan = PLAN
    if approval:
        stages = list(PLAN.stages)
        stages[stage] = stages[stage].model_copy(update={"approval": True})
        plan = PLAN.model_copy(update={"stages": stages})
    return Rollout(
        flag="checkout",
        rollout_id="r1",
        plan=plan,
        phase=phase,
        stage=stage,
        stage_started_at=T0,
        salt="s1",
        flag_version=7,
        stage_versions={0: [5, 6], 1: [7]},
        pause_reason=reason,
        started_at=T0,
        updated_at=T0,
    )


STATES: dict[str, Rollout | None] = {
    "none": None,
    "running": rollout(Phase.RUNNING),
    "running-approval": rollout(Phase.RUNNING, approval=True),
    "running-last": rollout(Phase.RUNNING, stage=2),
    "paused-operator": rollout(Phase.PAUSED, reason=PauseReason.OPERATOR),
    "paused-srm": rollout(Phase.PAUSED, reason=PauseReason.SRM),
    "paused-approval": rollout(Phase.PAUSED, reason=PauseReason.AWAITING_APPROVAL),
    "completed": rollout(Phase.COMPLETED, stage=2),
    "rolled_back": rollout(Phase.ROLLED_BACK),
    "aborted": rollout(Phase.ABORTED),
    "killed": rollout(Phase.KILLED),
}


def cmd(action: CommandAction, **extra: object) -> CommandInput:
    return CommandInput(
        action=action,
        flag="checkout",
        command_id=f"c-{action.value}",
        actor="ana",
        now=NOW,
        new_rollout_id="r2",
        new_salt="s2",
        **extra,  # type: ignore[arg-type]
    )


def refused(action: CommandAction, reason: str, key_id: str | None = "ops-1") -> CommandRefused:
    return CommandRefused(
        action=action,
        flag="checkout",
        command_id=f"c-{action.value}",
        actor="ana",
        key_id=key_id,
        reason=reason,
        now=NOW,
    )


def gate(kind: VerdictKind, pause: PauseReason | None = None) -> GateInput:
    return GateInput(Verdict(kind, f"gate says {kind.value}", pause, GateEvidence(breach="x")), NOW)


INPUTS: dict[str, Input] = {
    "start": cmd(CommandAction.START, plan=PLAN),
    "start-no-plan": cmd(CommandAction.START),
    "pause": cmd(CommandAction.PAUSE),
    "resume": cmd(CommandAction.RESUME),
    "promote": cmd(CommandAction.PROMOTE),
    "promote-end": cmd(CommandAction.PROMOTE, to_end=True),
    "rollback": cmd(CommandAction.ROLLBACK),
    "abort": cmd(CommandAction.ABORT),
    "kill": cmd(CommandAction.KILL),
    "approve": cmd(CommandAction.APPROVE),
    "gate-advance": gate(VerdictKind.ADVANCE),
    "gate-hold": gate(VerdictKind.HOLD),
    "gate-rollback": gate(VerdictKind.ROLLBACK),
    "gate-srm": gate(VerdictKind.PAUSE, PauseReason.SRM),
    "tick-late": TickInput(T0 + timedelta(minutes=31)),
    "tick-early": TickInput(T0 + timedelta(minutes=29)),
    "monitor-down": MonitorDownInput("api-uptime", "inc-1", NOW),
    "monitor-hold": MonitorDownInput("deploy-api", "deploy-9", NOW, hold=True),
    "monitor-up": MonitorUpInput("api-uptime", "inc-1", NOW),
    "refused-start": refused(CommandAction.START, "unsigned command", key_id=None),
    "refused-kill": refused(CommandAction.KILL, "bad signature"),
    "refused-resume": refused(CommandAction.RESUME, "replayed command id"),
}

# Expected outcome: (phase after or None, stage after, summary of actions).
# Summaries: "reject" = one rejected decision, "-" = nothing; otherwise the
# applied decision's action plus any alert kind, e.g. "advance", "rollback+alert:rollback".
ACTIVE = (
    "running",
    "running-approval",
    "running-last",
    "paused-operator",
    "paused-srm",
    "paused-approval",
)
FINISHED = ("completed", "rolled_back", "aborted", "killed")


def expected(state_key: str, input_key: str) -> tuple[str | None, int | None, str]:
    st = STATES[state_key]
    phase = st.phase.value if st else None
    stage = st.stage if st else None
    running = state_key.startswith("running")
    active = state_key in ACTIVE
    if input_key.startswith("refused"):  # refused before the machine: whatever the phase
        return phase, stage, "reject"
    if input_key == "start":
        return ("running", 0, "start") if not active else (phase, stage, "reject")
    if input_key == "start-no-plan":
        return phase, stage, "reject"
    if st is None:
        return (
            (None, None, "-")
            if input_key.startswith(("gate", "tick", "monitor"))
            else (None, None, "reject")
        )
    last = st.stage + 1 >= len(st.plan.stages)
    advance = ("completed", st.stage, "complete") if last else ("running", st.stage + 1, "advance")
    if input_key == "pause":
        return ("paused", stage, "pause") if running else (phase, stage, "reject")
    if input_key == "resume":
        ok = state_key in ("paused-operator", "paused-srm")
        return ("running", stage, "resume") if ok else (phase, stage, "reject")
    if input_key == "promote":
        return (*advance[:2], "promote") if active else (phase, stage, "reject")
    if input_key == "promote-end":
        return ("completed", stage, "promote") if active else (phase, stage, "reject")
    if input_key in ("rollback", "gate-rollback"):
        if active:
            return "rolled_back", stage, "rollback+alert:rollback"
        return (phase, stage, "reject") if input_key == "rollback" else (phase, stage, "-")
    if input_key == "abort":
        return ("aborted", stage, "abort") if active else (phase, stage, "reject")
    if input_key in ("kill", "monitor-down"):
        if active or state_key == "completed":
            return "killed", stage, "kill+alert:kill"
        return (phase, stage, "reject") if input_key == "kill" else (phase, stage, "-")
    if input_key == "approve":
        return (
            (*advance[:2], "approve")
            if state_key == "paused-approval"
            else (phase, stage, "reject")
        )
    if input_key == "gate-advance":
        if state_key == "running-approval":
            return "paused", stage, "pause:awaiting_approval"
        return advance if running else (phase, stage, "-")
    if input_key == "gate-srm":
        return ("paused", stage, "pause:srm+alert:srm") if running else (phase, stage, "-")
    if input_key == "monitor-hold":  # an aborted deploy: a running rollout pauses, never dies
        return (
            ("paused", stage, "pause:monitor+alert:monitor_hold")
            if running
            else (
                phase,
                stage,
                "-",
            )
        )
    if input_key == "monitor-up":
        return phase, stage, "monitor_up" if state_key == "killed" else "-"
    if input_key == "tick-late" and active and st.plan.stages[st.stage].max_duration:
        # Past max_duration the stage ends inconclusive: a running one pauses (the
        # default policy holds); a paused one is alerted about.
        if running:
            return "paused", stage, "pause:inconclusive+alert:stuck"
        return phase, stage, "alert:stuck"
    return phase, stage, "-"  # gate-hold, early ticks, ticks without max_duration


def summarize(actions: list[Action]) -> str:
    parts: list[str] = []
    for a in actions:
        if isinstance(a, RecordDecision):
            parts.append("reject" if a.outcome == "rejected" else a.action)
        elif isinstance(a, RaiseAlert):
            parts.append(f"alert:{a.kind}")
    return "+".join(parts) or "-"


@pytest.mark.parametrize("input_key", sorted(INPUTS))
@pytest.mark.parametrize("state_key", sorted(STATES))
def test_transition_table(state_key: str, input_key: str) -> None:
    before = STATES[state_key]
    after, actions = step(before, INPUTS[input_key])
    want_phase, want_stage, want_actions = expected(state_key, input_key)
    assert (after.phase.value if after else None) == want_phase
    assert (after.stage if after else None) == want_stage
    assert summarize(actions) == want_actions
    changed = want_actions not in ("-", "reject", "alert:stuck", "monitor_up")
    assert (PublishFlagState() in actions) == changed
    if changed:
        assert after is not None
        assert after.flag_version == (before.flag_version if before else 0) + 1
        assert after.flag_version in after.stage_versions[after.stage]
        late = INPUTS["tick-late"].now
        assert after.updated_at == (late if input_key == "tick-late" else NOW)
    elif want_actions != "alert:stuck":
        assert after == before  # rejected or ignored inputs never change state


def test_percent_follows_phase_and_stage() -> None:
    assert STATES["running"].percent == 50  # type: ignore[union-attr]
    assert STATES["paused-srm"].percent == 50  # type: ignore[union-attr]
    assert STATES["completed"].percent == 100  # type: ignore[union-attr]
    for key in ("rolled_back", "aborted", "killed"):
        assert STATES[key].percent == 0  # type: ignore[union-attr]


def test_advancing_starts_the_next_stage_timer_and_versions() -> None:
    after, _ = step(STATES["running"], gate(VerdictKind.ADVANCE))
    assert after is not None
    assert after.stage == 2
    assert after.stage_started_at == NOW
    assert after.stage_flag_versions() == {8}
    assert after.stage_versions[1] == [7]


def test_stuck_alert_fires_once() -> None:
    after, actions = step(STATES["running"], INPUTS["tick-late"])
    assert summarize(actions) == "pause:inconclusive+alert:stuck"
    assert after is not None
    assert after.stuck_alerted
    assert after.pause_reason is PauseReason.INCONCLUSIVE
    again, more = step(after, INPUTS["tick-late"])
    assert more == []
    assert again == after


def test_rollback_carries_the_gate_evidence() -> None:
    _, actions = step(STATES["running"], gate(VerdictKind.ROLLBACK))
    decision = next(a for a in actions if isinstance(a, RecordDecision))
    alert = next(a for a in actions if isinstance(a, RaiseAlert))
    assert decision.evidence.breach == "x"
    assert decision.evidence.at_stage is not None
    assert decision.evidence.at_stage.index == decision.stage
    assert alert.severity == "critical"
    assert alert.details["breach"] == "x"


def test_rejections_say_why() -> None:
    _, actions = step(STATES["killed"], INPUTS["resume"])
    (decision,) = actions
    assert isinstance(decision, RecordDecision)
    assert decision.outcome == "rejected"
    assert "killed" in decision.reason
    assert decision.command_id == "c-resume"


@pytest.mark.parametrize(
    ("state_key", "action", "reason"),
    [
        ("aborted", CommandAction.PROMOTE, "cannot promote an aborted rollout"),
        ("aborted", CommandAction.PAUSE, "cannot pause an aborted rollout"),
        ("completed", CommandAction.ROLLBACK, "cannot roll back a completed rollout"),
        ("killed", CommandAction.RESUME, "cannot resume a killed rollout"),
        ("rolled_back", CommandAction.ABORT, "cannot abort a rolled_back rollout"),
    ],
)
def test_rejections_read_as_english(state_key: str, action: CommandAction, reason: str) -> None:
    _, actions = step(STATES[state_key], cmd(action))
    (decision,) = actions
    assert isinstance(decision, RecordDecision)
    assert decision.reason == reason


REFUSALS = [
    (action, reason, key_id)
    for action, key_id in (
        (CommandAction.START, None),
        (CommandAction.KILL, "ops-1"),
        (CommandAction.PROMOTE, "ops-1"),
    )
    for reason in (
        "unsigned command",
        "unknown key id 'bob'",
        "bad signature",
        "stale command: 600s from now, limit 300s",
        "replayed command id",
        "plan cannot work: stage 1: never completes",
    )
]


@pytest.mark.parametrize(("action", "reason", "key_id"), REFUSALS)
@pytest.mark.parametrize("state_key", sorted(STATES))
def test_a_refused_command_is_recorded_and_changes_nothing(
    state_key: str, action: CommandAction, reason: str, key_id: str | None
) -> None:
    before = STATES[state_key]
    after, actions = step(before, refused(action, reason, key_id))
    assert after == before
    (decision,) = actions
    assert isinstance(decision, RecordDecision)
    phase = before.phase.value if before else None
    assert (decision.kind, decision.action, decision.outcome) == ("command", action, "rejected")
    assert (decision.reason, decision.command_id) == (reason, f"c-{action.value}")
    assert (decision.phase_before, decision.phase_after) == (phase, phase)
    assert decision.stage == (before.stage if before else None)
    assert decision.evidence.actor == "ana"
    assert decision.evidence.key_id == key_id
    if before is None:
        assert decision.evidence.at_stage is None
    else:
        assert decision.evidence.at_stage is not None
        assert decision.evidence.at_stage.index == before.stage


# -- dry-run guardrails: alerted once per stage, never acted upon ---------------------

DRY_RUN_GATES = ("gate-advance", "gate-hold", "gate-rollback", "gate-srm")


def dry_run(gate_input: Input) -> GateInput:
    """The same gate verdict with a dry-run error-rate guardrail that would have acted."""
    assert isinstance(gate_input, GateInput)
    trial = {"error_rate": DryRun(would="rollback")}
    verdict = gate_input.verdict
    evidence = verdict.evidence.model_copy(update={"dry_run": trial})
    return GateInput(
        Verdict(verdict.kind, verdict.reason, verdict.pause_reason, evidence, ("error_rate",)),
        gate_input.now,
    )


@pytest.mark.parametrize("input_key", DRY_RUN_GATES)
@pytest.mark.parametrize("state_key", sorted(STATES))
def test_dry_run_breach_table(state_key: str, input_key: str) -> None:
    """A dry-run breach adds one alert to an active rollout; the verdict does the rest."""
    before = STATES[state_key]
    after, actions = step(before, dry_run(INPUTS[input_key]))
    plain_after, plain_actions = step(before, INPUTS[input_key])
    alerted = before is not None and before.phase.active
    want = summarize(plain_actions)
    if alerted:
        want = "alert:guardrail" if want == "-" else f"alert:guardrail+{want}"
    assert summarize(actions) == want
    assert (after.phase if after else None) == (plain_after.phase if plain_after else None)
    assert (after.stage if after else None) == (plain_after.stage if plain_after else None)
    if before is None or after is None:
        return
    if alerted and after.stage == before.stage and after.phase.active:
        assert after.dry_run_alerted
    elif after.stage != before.stage:
        assert not after.dry_run_alerted  # a new stage may alert again


def test_dry_run_alert_fires_once_per_stage() -> None:
    first, actions = step(STATES["running"], dry_run(INPUTS["gate-hold"]))
    (alert,) = actions
    assert isinstance(alert, RaiseAlert)
    assert alert.severity == "info"
    assert alert.details["dry_run"] == {"error_rate": {"would": "rollback"}}
    assert alert.details["breaches"] == ["error_rate"]
    assert first is not None
    assert first.flag_version == STATES["running"].flag_version  # type: ignore[union-attr]
    again, more = step(first, dry_run(INPUTS["gate-hold"]))
    assert more == []
    assert again == first
    advanced, _ = step(first, dry_run(INPUTS["gate-advance"]))
    assert advanced is not None
    assert advanced.stage == first.stage + 1
    assert not advanced.dry_run_alerted


@pytest.mark.parametrize(
    "state",
    [
        *(rollout(phase) for phase in Phase if phase is not Phase.PAUSED),
        *(rollout(Phase.PAUSED, reason=reason) for reason in PauseReason),
    ],
    ids=lambda r: f"{r.phase.value}-{r.pause_reason or ''}",
)
def test_the_commands_offered_are_those_the_machine_applies(state: Rollout) -> None:
    """What the console offers in a phase is exactly what ``step`` would not reject."""
    applied = []
    for action in CommandAction:
        if action is CommandAction.START:
            continue
        _, actions = step(state, cmd(action))
        outcomes = [a.outcome for a in actions if isinstance(a, RecordDecision)]
        if outcomes and outcomes[0] == "applied":
            applied.append(action)
    assert sorted(applicable(state.phase, state.pause_reason)) == sorted(applied)
    if state.phase in (Phase.ROLLED_BACK, Phase.ABORTED):
        assert applicable(state.phase, state.pause_reason) == []
