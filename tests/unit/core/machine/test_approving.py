"""Approvals by several people for a stage: distinct people count once, each until it expires;
the stage moves on at the last one needed; a revoked key's approvals count no more."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from controller.core.machine.machine import step
from controller.core.rollouts import ApprovalGate, ApprovalRule, Ledger
from controller.core.rollouts.actions import Action, PublishFlagState, RecordDecision
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.core.rollouts.policy import PauseReason
from controller.core.rollouts.rollout import CommandInput, KeysRevokedInput, Phase, Rollout
from controller.core.wire import ApprovalRecord
from controller.core.wire.messages import CommandAction

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TWO_APPROVERS = ApprovalGate(needs=(ApprovalRule(role="approver", count=2),))
BOTH = ApprovalGate(needs=(ApprovalRule(role="approver"), ApprovalRule(role="security")))
HOLDERS = {"ana-laptop": "ana", "ana-phone": "ana", "bo-laptop": "bo"}
"""Keys whose registry record names a holder; every other key is its own."""


def awaiting(gate: ApprovalGate) -> Rollout:
    plan = Plan(stages=[Stage(percent=5, approval=gate), Stage(percent=100)])
    return Rollout(
        flag="checkout",
        rollout_id="r1",
        plan=plan,
        phase=Phase.PAUSED,
        stage=0,
        stage_started_at=T0,
        salt="s1",
        flag_version=3,
        stage_versions={0: [3]},
        pause_reason=PauseReason.AWAITING_APPROVAL,
        started_at=T0,
        updated_at=T0,
    )


def approve(key: str, *, roles: tuple[str, ...] = ("approver",), hours: float = 0) -> CommandInput:
    return CommandInput(
        action=CommandAction.APPROVE,
        flag="checkout",
        command_id=f"c-{key}-{hours}",
        actor=f"{key}-person",
        key_id=key,
        now=T0 + timedelta(hours=hours),
        roles=roles,
        holder=HOLDERS.get(key, ""),
    )


def decided(actions: Sequence[Action]) -> RecordDecision:
    found = [a for a in actions if isinstance(a, RecordDecision)]
    assert len(found) == 1
    return found[0]


Approvals = list[tuple[str, tuple[str, ...], float]]
CASES: dict[str, tuple[ApprovalGate, Approvals, str, str, int]] = {
    # case: (gate, approvals (key, roles, hours), last outcome, its reason contains, stage)
    "one approval does not move it": (
        TWO_APPROVERS,
        [("ana", ("approver",), 0)],
        "applied",
        "ana-person (key ana, approver) approved stage 1: 1 more from approver",
        0,
    ),
    "a second from the same key does not count": (
        TWO_APPROVERS,
        [("ana", ("approver",), 0), ("ana", ("approver",), 1)],
        "rejected",
        "key ana already approved stage-0",
        0,
    ),
    "a second key's moves it": (
        TWO_APPROVERS,
        [("ana", ("approver",), 0), ("bo", ("approver",), 1)],
        "applied",
        "every approval given",
        1,
    ),
    "an expired approval counts nothing": (
        TWO_APPROVERS,
        [("ana", ("approver",), 0), ("bo", ("approver",), 25)],
        "applied",
        "1 more from approver",
        0,
    ),
    "a key holding none of the roles is refused": (
        TWO_APPROVERS,
        [("dev", ("dev",), 0)],
        "rejected",
        "stage 1 needs approvals from approver; key dev holds dev",
        0,
    ),
    "one key holding both roles counts once": (
        BOTH,
        [("ana", ("approver", "security"), 0), ("ana", ("approver", "security"), 1)],
        "rejected",
        "a key counts once",
        0,
    ),
    "two keys of one holder count once": (
        TWO_APPROVERS,
        [("ana-laptop", ("approver",), 0), ("ana-phone", ("approver",), 1)],
        "rejected",
        "ana, who holds key ana-phone, already approved stage-0",
        0,
    ),
    "one holder's two keys with both roles count once": (
        BOTH,
        [("ana-laptop", ("approver",), 0), ("ana-phone", ("security",), 1)],
        "rejected",
        "a person counts once, whichever key they sign with",
        0,
    ),
    "another holder's key moves it": (
        TWO_APPROVERS,
        [
            ("ana-laptop", ("approver",), 0),
            ("ana-phone", ("approver",), 1),
            ("bo-laptop", ("approver",), 2),
        ],
        "applied",
        "every approval given",
        1,
    ),
    "each role from its own key": (
        BOTH,
        [("ana", ("approver", "security"), 0), ("sec", ("security",), 1)],
        "applied",
        "every approval given",
        1,
    ),
}


@pytest.mark.parametrize(
    ("gate", "approvals", "outcome", "reason", "stage"), CASES.values(), ids=CASES
)
def test_a_stage_moves_on_when_enough_distinct_people_approved(
    gate: ApprovalGate, approvals: Approvals, outcome: str, reason: str, stage: int
) -> None:
    state: Rollout | None = awaiting(gate)
    actions: list[Action] = []
    for key, roles, hours in approvals:
        assert state is not None
        state, actions = step(state, approve(key, roles=roles, hours=hours))
    said = decided(actions)
    assert (said.action, said.outcome) == ("approve", outcome)
    assert reason in said.reason
    assert state is not None
    assert state.stage == stage
    # The flag state changes only when the stage moves on
    assert any(isinstance(a, PublishFlagState) for a in actions) is (stage == 1)


def test_the_audit_says_who_approved_what_and_when() -> None:
    state, _ = step(awaiting(TWO_APPROVERS), approve("ana"))
    assert state is not None
    state, actions = step(state, approve("bo", hours=1))
    said = decided(actions)
    assert said.evidence.approved == {"approver": ["ana-person (ana)", "bo-person (bo)"]}
    assert said.evidence.approval == ApprovalRecord(
        **{
            "operator": "bo-person",
            "key_id": "bo",
            "holder": "bo",
            "role": "approver",
            "command_id": "c-bo-1",
            "at": (T0 + timedelta(hours=1)).isoformat(),
        }
    )
    assert said.evidence.needed == {"approver": 0}


def test_a_revoked_key_takes_its_approvals_with_it() -> None:
    state, _ = step(awaiting(TWO_APPROVERS), approve("ana"))
    assert state is not None
    assert len(state.approvals.approvals) == 1
    revoked, actions = step(state, KeysRevokedInput(("ana", "nobody"), T0 + timedelta(hours=1)))
    assert revoked is not None
    assert revoked.approvals.approvals == ()
    said = decided(actions)
    assert (said.action, said.reason) == ("revoke", "key ana revoked: its approvals count no more")
    assert [a.key_id for a in said.evidence.removed or []] == ["ana"]
    # bo's approval alone no longer moves it
    after, _ = step(revoked, approve("bo", hours=2))
    assert after is not None
    assert after.stage == 0
    # A revocation of a key that approved nothing changes nothing
    assert step(revoked, KeysRevokedInput(("ana",), T0)) == (revoked, [])


def test_a_single_approval_stage_and_older_states_are_as_before() -> None:
    plain = awaiting(TWO_APPROVERS)
    plain = plain.model_copy(
        update={"plan": Plan(stages=[Stage(percent=5, approval=True), Stage(percent=100)])}
    )
    state, actions = step(plain, approve("dev", roles=()))
    assert state is not None
    assert state.stage == 1
    assert decided(actions).outcome == "applied"
    stored = plain.model_dump(mode="json")
    del stored["approvals"]  # a state stored before approvals by several people
    assert Rollout.model_validate(stored).approvals == Ledger()
