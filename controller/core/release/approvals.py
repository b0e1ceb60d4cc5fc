"""Approvals by several people: what a step needs, and the ledger of who gave them.

A step may need approvals from N distinct people holding a role
(:class:`ApprovalGate`: one or more roles, each with its count). Each
approval is a signed ``approve`` command, kept as an :class:`Approval`: the
step (its environment), the key and the person holding it (the registry's
``holder``, else the key itself), the operator, the role it was given under,
the command's id, and when. The :class:`Ledger` holds them, and holds to:

* a person counts once per step, whatever their keys and roles (a second
  approval from them, with the same key or another they hold, is refused
  while their first is live; after the first expires it replaces it);
* a command id is decided once: a replay counts nothing, and changes nothing;
* an approval expires ``expires_after`` its time, and then counts nothing;
* revoking a key removes its approvals still pending (:func:`revoke`).

:func:`approvals_needed` says, per role, how many more are needed and who
has approved. Pure: the clock is an argument, and which roles a key holds is
checked before (:func:`controller.core.release.roles.holds`). The gate and
the ledger themselves are data of :mod:`controller.core.rollouts.approval_ledger`,
where a plan's stage can name them too.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from controller.core.release.verdicts import Refused
from controller.core.rollouts import (
    MAX_APPROVALS,
    MAX_COUNT,
    MAX_SEEN,
    Approval,
    ApprovalGate,
    ApprovalRule,
    ApprovalTtl,
    Ledger,
)

__all__ = [
    "MAX_APPROVALS",
    "MAX_COUNT",
    "MAX_SEEN",
    "REPLAYED",
    "Approval",
    "ApprovalGate",
    "ApprovalRule",
    "ApprovalTtl",
    "Counted",
    "Ledger",
    "Needed",
    "approvals_needed",
    "record",
    "revoke",
]

REPLAYED = "replayed command id"


@dataclass(frozen=True, slots=True)
class Counted:
    """The approval counts."""

    approval: Approval


def record(
    ledger: Ledger, approval: Approval, gate: ApprovalGate, now: datetime
) -> tuple[Ledger, Counted | Refused]:
    """The ledger after ``approval``: counted, or refused with the reason. A replayed
    command id leaves the ledger as it was; any other refusal marks the id decided."""
    if approval.command_id in ledger.seen:
        return ledger, Refused(REPLAYED)
    refused = _refusal(ledger, approval, gate, now)
    if refused is not None:
        return ledger.saw(approval.command_id), Refused(refused)
    kept = tuple(
        a for a in ledger.approvals if (a.step, a.person) != (approval.step, approval.person)
    )
    if len(kept) >= MAX_APPROVALS:
        return ledger.saw(approval.command_id), Refused("too many approvals pending")
    new = ledger.model_copy(update={"approvals": (*kept, approval)}).saw(approval.command_id)
    return new, Counted(approval)


def _refusal(ledger: Ledger, approval: Approval, gate: ApprovalGate, now: datetime) -> str | None:
    roles = [rule.role for rule in gate.needs]
    if approval.role not in roles:
        return f"{approval.step} needs approvals from {', '.join(roles)}, not {approval.role}"
    if not approval.live(gate, now):
        at, ttl = approval.at.isoformat(), gate.expires_after
        return f"the approval from {at} is not valid at {now.isoformat()} (valid for {ttl})"
    for earlier in ledger.live(approval.step, gate, now):
        if earlier.person == approval.person:
            return _twice(approval, earlier)
    return None


def _twice(approval: Approval, earlier: Approval) -> str:
    at = earlier.at.isoformat()
    if earlier.key_id == approval.key_id:
        return f"key {approval.key_id} already approved {approval.step} at {at}: a key counts once"
    return (
        f"{approval.person}, who holds key {approval.key_id}, already approved {approval.step}"
        f" at {at} with key {earlier.key_id}: a person counts once, whichever key they sign with"
    )


def revoke(
    ledger: Ledger, key_id: str, steps: Collection[str] | None = None
) -> tuple[Ledger, tuple[Approval, ...]]:
    """The ledger without ``key_id``'s approvals (of ``steps`` only, when given: those
    still pending), and the approvals removed."""

    def gone(a: Approval) -> bool:
        return a.key_id == key_id and (steps is None or a.step in steps)

    removed = tuple(a for a in ledger.approvals if gone(a))
    if not removed:
        return ledger, ()
    kept = tuple(a for a in ledger.approvals if not gone(a))
    return ledger.model_copy(update={"approvals": kept}), removed


@dataclass(frozen=True, slots=True)
class Needed:
    """Per role, how many more approvals a step needs, and who has given theirs."""

    missing: dict[str, int]
    approved: dict[str, tuple[str, ...]]

    @property
    def done(self) -> bool:
        return not any(self.missing.values())

    def summary(self) -> str:
        """``2 more from approver, 1 more from security``, or ``every approval given``."""
        parts = [f"{count} more from {role}" for role, count in self.missing.items() if count]
        return ", ".join(parts) if parts else "every approval given"


def approvals_needed(ledger: Ledger, step: str, gate: ApprovalGate, now: datetime) -> Needed:
    """Who still has to approve ``step`` at ``now``: live approvals only, a person once
    (the first of theirs, should a ledger hold two: one stored before their keys named
    the same holder)."""
    live, people = [], set()
    for one in ledger.live(step, gate, now):
        if one.person not in people:
            people.add(one.person)
            live.append(one)
    missing, approved = {}, {}
    for rule in gate.needs:
        operators = tuple(f"{a.operator} ({a.key_id})" for a in live if a.role == rule.role)
        approved[rule.role] = operators
        missing[rule.role] = max(0, rule.count - len(operators))
    return Needed(missing, approved)
