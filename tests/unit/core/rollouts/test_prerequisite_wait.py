"""A child's rollout holds while a flag it requires is not served to its audience: forward
moves wait with a reason that begins ``prerequisite``; rollbacks, kills and pauses never
wait for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core.machine import parent_killed
from controller.core.machine.machine import step
from controller.core.rollouts import PREREQUISITE, prerequisite_wait
from controller.core.rollouts.actions import Action, RecordDecision
from controller.core.rollouts.moving import next_move
from controller.core.rollouts.plan import parse_plan
from controller.core.rollouts.rollout import (
    CommandInput,
    GateInput,
    Input,
    Phase,
    Rollout,
    Verdict,
    VerdictKind,
)
from controller.core.wire import GateEvidence
from controller.core.wire.messages import CommandAction

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
STAGES = [{"percent": 10, "min_duration": "5m"}, {"percent": 50}, {"percent": 100}]


def rollout(
    flag: str,
    *,
    requires: list[dict[str, Any]] | None = None,
    phase: Phase = Phase.RUNNING,
    stage: int = 0,
    **plan: Any,
) -> Rollout:
    the_plan = parse_plan(
        {"stages": STAGES, "windows": [], **({"requires": requires} if requires else {}), **plan}
    )
    return Rollout(
        flag=flag, rollout_id=f"r-{flag}", plan=the_plan, phase=phase, stage=stage,
        stage_started_at=T0, salt="s", flag_version=1, stage_versions={0: [1]},
        started_at=T0, updated_at=T0,
    )  # fmt: skip


def needs(*variants: str, flag: str = "parent") -> list[dict[str, Any]]:
    return [{"flag": flag, "variants": list(variants)}]


CHILD = rollout("child", requires=needs("treatment"))
AUDIENCE: dict[str, Any] = {"audience": 'country == "DE"'}


# -- what "served to its audience" is ------------------------------------------------


@pytest.mark.parametrize(
    ("variants", "parent", "held_because"),
    [
        (["treatment"], rollout("parent", phase=Phase.COMPLETED), None),
        (["treatment"], rollout("parent", stage=2), None),
        (["treatment"], rollout("parent", stage=2, phase=Phase.PAUSED), None),
        (["treatment"], rollout("parent"), "serves treatment to 10% of units"),
        (["treatment"], rollout("parent", stage=1), "serves treatment to 50% of units"),
        (["treatment"], rollout("parent", phase=Phase.KILLED), "is killed"),
        (["treatment"], rollout("parent", phase=Phase.ROLLED_BACK), "serves treatment to 0%"),
        (["treatment"], rollout("parent", phase=Phase.ABORTED), "serves treatment to 0%"),
        (["treatment"], rollout("parent", phase=Phase.PENDING), "serves treatment to 0%"),
        (["treatment"], None, "is unknown"),
        (["control"], rollout("parent", phase=Phase.ROLLED_BACK), None),
        (["control"], rollout("parent", phase=Phase.PENDING), None),
        (["control"], rollout("parent", phase=Phase.KILLED), "is killed"),
        (["control"], rollout("parent"), "serves treatment to 10% of units"),
        (["control"], rollout("parent", phase=Phase.COMPLETED), "treatment to 100%"),
        (["treatment", "control"], rollout("parent"), None),
        (["treatment", "control"], rollout("parent", phase=Phase.ROLLED_BACK), None),
        (["treatment", "control"], rollout("parent", phase=Phase.KILLED), "is killed"),
        (["treatment", "control"], None, "is unknown"),
        (["treatment"], rollout("parent", stage=2, **AUDIENCE), "by audience rules"),
    ],
)
def test_a_prerequisite_is_served_when_every_unit_gets_a_listed_variant(
    variants: list[str], parent: Rollout | None, held_because: str | None
) -> None:
    child = rollout("child", requires=needs(*variants))
    why = prerequisite_wait(child, {} if parent is None else {"parent": parent})
    if held_because is None:
        assert why is None
    else:
        assert why is not None
        assert why.startswith(f"{PREREQUISITE}: parent ")
        assert held_because in why


def test_a_plan_without_prerequisites_never_waits_on_them() -> None:
    assert prerequisite_wait(rollout("child"), {}) is None


def test_a_parent_failing_its_own_prerequisite_does_not_serve_the_child() -> None:
    grand = rollout("grand")  # 10%: the parent's [treatment] is not met for everyone
    parent = rollout("parent", requires=needs("treatment", flag="grand"), stage=2)
    why = prerequisite_wait(CHILD, {"parent": parent, "grand": grand})
    assert why is not None
    assert "parent does not serve its own prerequisites to everyone" in why
    done = grand.model_copy(update={"phase": Phase.COMPLETED})
    assert prerequisite_wait(CHILD, {"parent": parent, "grand": done}) is None


def test_a_cycle_is_not_served_and_the_walk_ends() -> None:
    a = rollout("a", requires=needs("treatment", flag="b"), stage=2)
    b = rollout("b", requires=needs("treatment", flag="a"), stage=2)
    why = prerequisite_wait(a, {"a": a, "b": b})
    assert why is not None
    assert "b does not serve its own prerequisites" in why


def test_parents_are_read_in_the_childs_environment_and_each_is_named() -> None:
    child = rollout(
        "child@staging",
        requires=[
            {"flag": "p1", "variants": ["treatment"]},
            {"flag": "p2", "variants": ["control"]},
        ],
    )
    held = {"p1": rollout("p1", stage=2), "p1@staging": rollout("p1@staging")}
    why = prerequisite_wait(child, held)
    assert why == (
        "prerequisite: p1 serves treatment to 10% of units, not only treatment; "
        "p2 is unknown (no rollout of it here)"
    )


# -- the machine ---------------------------------------------------------------------


def run(state: Rollout, event: Input) -> tuple[Rollout, list[Action]]:
    after, actions = step(state, event)
    assert after is not None
    return after, actions


def gate(kind: VerdictKind, held: str | None, now: datetime = NOW) -> GateInput:
    verdict = Verdict(kind, f"gate says {kind.value}", None, GateEvidence())
    return GateInput(verdict, now, prerequisite=held)


HELD = prerequisite_wait(CHILD, {"parent": rollout("parent")})


def test_an_advance_waits_while_the_parent_is_not_served_with_one_wait_decision() -> None:
    waiting, actions = run(CHILD, gate(VerdictKind.ADVANCE, HELD))
    assert (waiting.stage, waiting.phase) == (0, Phase.RUNNING)
    assert waiting.window_wait == HELD
    [recorded] = actions
    assert isinstance(recorded, RecordDecision)
    assert (recorded.action, recorded.reason) == ("wait", HELD)
    moved = next_move(waiting, None, NOW)
    assert moved is not None
    assert (moved.why, moved.at) == (HELD, None)
    again, more = run(waiting, gate(VerdictKind.ADVANCE, HELD, NOW + timedelta(minutes=1)))
    assert (again.window_wait, more) == (HELD, [])


def test_the_child_goes_on_at_the_first_gate_after_the_parent_is_served() -> None:
    waiting, _ = run(CHILD, gate(VerdictKind.ADVANCE, HELD))
    moved, actions = run(waiting, gate(VerdictKind.ADVANCE, None, NOW + timedelta(minutes=1)))
    assert (moved.stage, moved.window_wait) == (1, None)
    assert any(isinstance(a, RecordDecision) and a.action == "advance" for a in actions)


def test_a_hold_once_the_parent_is_served_clears_the_wait() -> None:
    waiting, _ = run(CHILD, gate(VerdictKind.ADVANCE, HELD))
    cleared, actions = run(waiting, gate(VerdictKind.HOLD, None, NOW + timedelta(minutes=1)))
    assert (cleared.window_wait, cleared.stage, actions) == (None, 0, [])
    still, _ = run(waiting, gate(VerdictKind.HOLD, HELD, NOW + timedelta(minutes=1)))
    assert still.window_wait == HELD


def test_the_end_of_a_watch_waits_for_the_parent_too() -> None:
    watched = rollout("child", requires=needs("treatment"), stage=2, watch={"duration": "1m"})
    watching = watched.model_copy(update={"watch_until": T0})
    waiting, actions = run(watching, gate(VerdictKind.ADVANCE, HELD))
    assert (waiting.phase, waiting.window_wait) == (Phase.RUNNING, HELD)
    assert [a.action for a in actions if isinstance(a, RecordDecision)] == ["wait"]


def test_a_rollback_never_waits_for_a_parent() -> None:
    rolled, _ = run(CHILD, gate(VerdictKind.ROLLBACK, HELD))
    assert rolled.phase is Phase.ROLLED_BACK


@pytest.mark.parametrize(
    ("action", "phase"),
    [
        (CommandAction.KILL, Phase.KILLED),
        (CommandAction.ROLLBACK, Phase.ROLLED_BACK),
        (CommandAction.PAUSE, Phase.PAUSED),
        (CommandAction.ABORT, Phase.ABORTED),
    ],
)
def test_kills_pauses_and_rollbacks_pass_a_child_waiting_on_its_parent(
    action: CommandAction, phase: Phase
) -> None:
    waiting, _ = run(CHILD, gate(VerdictKind.ADVANCE, HELD))
    command = CommandInput(action=action, flag="child", command_id="c", actor="ana", now=NOW)
    after, _ = run(waiting, command)
    assert after.phase is phase


# -- a parent's kill on a child's history --------------------------------------------


@pytest.mark.parametrize("phase", [Phase.RUNNING, Phase.PAUSED, Phase.COMPLETED])
def test_a_parents_kill_is_recorded_on_the_child_and_changes_nothing(phase: Phase) -> None:
    child = rollout("child", requires=needs("treatment"), phase=phase, stage=1)
    record = parent_killed(child, "parent", "ana (command c-1)", "error rate up")
    assert (record.kind, record.action, record.outcome) == (
        "command",
        "prerequisite_killed",
        "recorded",
    )
    assert record.phase_before == record.phase_after == phase.value
    assert record.stage == 1
    assert record.command_id is None, "the kill's own decision is the one for its command"
    assert record.reason == (
        "parent, a flag it requires, was killed by ana (command c-1): error rate up; "
        "its units are served control (PREREQUISITE_FAILED)"
    )
    assert record.evidence.at_stage is not None
    assert record.evidence.at_stage.index == 1
