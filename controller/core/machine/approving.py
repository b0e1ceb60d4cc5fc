"""Approvals by several people for a rollout's stage: ``approve`` counts until enough have.

A stage whose ``approval`` names an :class:`~controller.core.rollouts.ApprovalGate`
waits, paused ``awaiting_approval``, for approvals from N distinct people
(key holders) holding a role. Each ``approve`` counts under a role the key
holds, one the stage needs (the first still missing; the command intake says which roles
the key holds where it acts), and is kept in the rollout's ledger, saved
with the decision that says who approved and what is still missing:

* a person counts once per stage, whichever of their keys signs; their
  second approval is refused while their first is live;
* a replayed command is refused before it reaches the machine, and counts
  nothing (the store keeps the ids of applied commands);
* an approval expires ``expires_after`` its time;
* once every role has its count of live approvals the stage moves on, as a
  single approval does (inside the release windows);
* a key that leaves the registry (:class:`~controller.core.rollouts.KeysRevokedInput`)
  takes its approvals with it.

Pure, a part of the state machine.
"""

from __future__ import annotations

from controller.core.machine.transitions import Cause, Step, advance, decision, rejected
from controller.core.machine.waiting import forward_command
from controller.core.release import Approval, Counted, approvals_needed, record, revoke
from controller.core.rollouts import (
    ApprovalGate,
    CommandInput,
    KeysRevokedInput,
    Rollout,
    stage_step,
)
from controller.core.wire import RolloutEvidence


def count(state: Rollout, cmd: CommandInput, gate: ApprovalGate) -> Step:
    """``cmd`` (an ``approve``) counted for the current stage, which needs ``gate``."""
    step = stage_step(state.stage)
    needed = approvals_needed(state.approvals, step, gate, cmd.now)
    held = [role for role in gate.roles if role in cmd.roles]
    if not held:
        holds = ", ".join(cmd.roles) or "none that may approve here"
        why = (
            f"stage {state.stage + 1} needs approvals from {', '.join(gate.roles)};"
            f" key {cmd.key_id} holds {holds}"
        )
        return state, [rejected(state, cmd, why)]
    role = next((r for r in held if needed.missing.get(r)), held[0])
    approval = Approval(
        step=step,
        key_id=cmd.key_id,
        operator=cmd.actor,
        role=role,
        command_id=cmd.command_id,
        at=cmd.now,
        holder=cmd.holder or None,
    )
    ledger, result = record(state.approvals, approval, gate, cmd.now)
    if not isinstance(result, Counted):
        return state, [rejected(state, cmd, result.reason)]
    counted = state.model_copy(update={"approvals": ledger})
    needed = approvals_needed(ledger, step, gate, cmd.now)
    evidence = _evidence(approval, needed.missing, needed.approved)
    who = f"{cmd.actor} (key {cmd.key_id}, {role})"
    said = Cause(
        "command", f"{who} approved stage {state.stage + 1}: {needed.summary()}", cmd, evidence
    )
    if not needed.done:
        new = counted.model_copy(update={"updated_at": cmd.now})
        return new, [decision(state, new, "approve", said)]
    return forward_command(counted, cmd, lambda s: advance(s, cmd.now, said))


def _evidence(
    approval: Approval, missing: dict[str, int], approved: dict[str, tuple[str, ...]]
) -> RolloutEvidence:
    return RolloutEvidence(
        approval=approval.evidence(),
        needed=missing,
        approved={role: list(names) for role, names in approved.items()},
    )


def revoked(state: Rollout, event: KeysRevokedInput) -> Step:
    """The rollout without the approvals of keys that left the registry, and the record."""
    if not state.phase.active:
        return state, []
    ledger, removed = state.approvals, list[Approval]()
    for key_id in event.key_ids:
        ledger, gone = revoke(ledger, key_id)
        removed += gone
    if not removed:
        return state, []
    new = state.model_copy(update={"approvals": ledger, "updated_at": event.now})
    keys = ", ".join(sorted({a.key_id for a in removed}))
    why = Cause(
        "command",
        f"key {keys} revoked: its approvals count no more",
        None,
        RolloutEvidence(removed=[a.evidence() for a in removed]),
    )
    return new, [decision(state, new, "revoke", why)]
