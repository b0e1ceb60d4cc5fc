"""The approvals ledger: distinct keys, replays, expiry, revocation, who still has to approve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from controller.core.release.approvals import (
    MAX_SEEN,
    REPLAYED,
    Approval,
    ApprovalGate,
    ApprovalRule,
    Counted,
    Ledger,
    approvals_needed,
    record,
    revoke,
)
from controller.core.release.verdicts import Refused

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TWO_APPROVERS = ApprovalGate(needs=(ApprovalRule(role="approver", count=2),))
WITH_SECURITY = ApprovalGate(
    needs=(ApprovalRule(role="approver", count=2), ApprovalRule(role="security")),
    expires_after=timedelta(hours=1),
)


def approval(
    key: str,
    command: str,
    *,
    role: str = "approver",
    step: str = "production",
    at: datetime = NOW,
    holder: str | None = None,
) -> Approval:
    return Approval(
        step=step,
        key_id=key,
        operator=f"op-{key}",
        role=role,
        command_id=command,
        at=at,
        holder=holder,
    )


def ledger_of(*approvals: Approval, gate: ApprovalGate = TWO_APPROVERS) -> Ledger:
    ledger = Ledger()
    for one in approvals:
        ledger, _ = record(ledger, one, gate, one.at)
    return ledger


Case = tuple[tuple[Approval, ...], Approval, ApprovalGate, datetime, str | None, dict[str, int]]
RECORDS: dict[str, Case] = {
    # case: (approvals before, the new one, gate, now, its refusal or None, still missing per role)
    "the first counts": ((), approval("k1", "c1"), TWO_APPROVERS, NOW, None, {"approver": 1}),
    "a second key's counts": (
        (approval("k1", "c1"),), approval("k2", "c2"), TWO_APPROVERS, NOW, None, {"approver": 0},
    ),
    "the same key counts once": (
        (approval("k1", "c1"),), approval("k1", "c2"), TWO_APPROVERS, NOW,
        "key k1 already approved production at 2026-11-23T09:00:00+00:00: a key counts once",
        {"approver": 1},
    ),
    "a replayed command id counts nothing": (
        (approval("k1", "c1"),), approval("k2", "c1"), TWO_APPROVERS, NOW, REPLAYED,
        {"approver": 1},
    ),
    "a role the step does not need": (
        (), approval("k1", "c1", role="dev"), TWO_APPROVERS, NOW,
        "production needs approvals from approver, not dev", {"approver": 2},
    ),
    "the same key again after its approval expired": (
        (approval("k1", "c1", at=NOW - timedelta(hours=25)),), approval("k1", "c2"),
        TWO_APPROVERS, NOW, None, {"approver": 1},
    ),
    "an approval already expired when it comes": (
        (), approval("k1", "c1", at=NOW - timedelta(hours=2)), WITH_SECURITY, NOW,
        "the approval from 2026-11-23T07:00:00+00:00 is not valid at"
        " 2026-11-23T09:00:00+00:00 (valid for 1:00:00)",
        {"approver": 2, "security": 1},
    ),
    "a key counts for one role only": (
        (approval("k1", "c1"),), approval("k1", "c2", role="security"), WITH_SECURITY, NOW,
        "key k1 already approved production at 2026-11-23T09:00:00+00:00: a key counts once",
        {"approver": 1, "security": 1},
    ),
    "a second key of the same holder counts nothing": (
        (approval("ana-1", "c1", holder="ana"),), approval("ana-2", "c2", holder="ana"),
        TWO_APPROVERS, NOW,
        "ana, who holds key ana-2, already approved production at 2026-11-23T09:00:00+00:00"
        " with key ana-1: a person counts once, whichever key they sign with",
        {"approver": 1},
    ),
    "a holder's second key counts for no other role either": (
        (approval("ana-1", "c1", holder="ana"),),
        approval("ana-2", "c2", role="security", holder="ana"), WITH_SECURITY, NOW,
        "ana, who holds key ana-2, already approved production at 2026-11-23T09:00:00+00:00"
        " with key ana-1: a person counts once, whichever key they sign with",
        {"approver": 1, "security": 1},
    ),
    "a key naming no holder is its own: a holder of that name is the same person": (
        (approval("ana", "c1"),), approval("ana-2", "c2", holder="ana"), TWO_APPROVERS, NOW,
        "ana, who holds key ana-2, already approved production at 2026-11-23T09:00:00+00:00"
        " with key ana: a person counts once, whichever key they sign with",
        {"approver": 1},
    ),
    "another holder's key counts": (
        (approval("ana-1", "c1", holder="ana"),), approval("bo-1", "c2", holder="bo"),
        TWO_APPROVERS, NOW, None, {"approver": 0},
    ),
    "a holder's other key after their approval expired replaces it": (
        (approval("ana-1", "c1", holder="ana", at=NOW - timedelta(hours=25)),),
        approval("ana-2", "c2", holder="ana"), TWO_APPROVERS, NOW, None, {"approver": 1},
    ),
    "another step's approval is another count": (
        (approval("k1", "c1", step="staging"),), approval("k1", "c2"), TWO_APPROVERS, NOW, None,
        {"approver": 1},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(RECORDS))
def test_record(case: str) -> None:
    before, new, gate, now, refusal, missing = RECORDS[case]
    ledger = ledger_of(*before, gate=gate)
    after, result = record(ledger, new, gate, now)
    if refusal is None:
        assert result == Counted(new)
        assert new in after.approvals
    else:
        assert result == Refused(refusal)
        assert after.approvals == ledger.approvals
    assert approvals_needed(after, "production", gate, now).missing == missing


def test_a_person_counts_once_even_when_the_ledger_holds_two_of_theirs() -> None:
    # One stored while the first key named no holder, before the registry tied both to ana.
    ledger = Ledger(
        approvals=(approval("ana", "c1"), approval("ana-2", "c2", holder="ana")), seen=("c1", "c2")
    )
    needed = approvals_needed(ledger, "production", TWO_APPROVERS, NOW)
    assert needed.missing == {"approver": 1}
    assert needed.approved == {"approver": ("op-ana (ana)",)}


def test_an_approval_stored_before_keys_named_holders_reads_back_as_its_keys() -> None:
    stored = approval("k1", "c1").model_dump(mode="json")
    del stored["holder"]
    read = Approval.model_validate(stored)
    assert (read.holder, read.person) == (None, "k1")
    assert read.evidence().holder == "k1"


def test_a_refused_command_id_is_decided_and_its_replay_changes_nothing() -> None:
    ledger = ledger_of(approval("k1", "c1"))
    once, refused = record(ledger, approval("k1", "c2"), TWO_APPROVERS, NOW)
    assert isinstance(refused, Refused)
    assert "c2" in once.seen
    twice, replayed = record(once, approval("k1", "c2"), TWO_APPROVERS, NOW)
    assert replayed == Refused(REPLAYED)
    assert twice == once


EXPIRY: dict[str, tuple[timedelta, dict[str, int]]] = {
    # case: (time since both approvals, still missing)
    "fresh": (timedelta(0), {"approver": 0}),
    "just before the end": (timedelta(hours=24) - timedelta(seconds=1), {"approver": 0}),
    "at the end": (timedelta(hours=24), {"approver": 2}),
    "long after": (timedelta(days=3), {"approver": 2}),
}


@pytest.mark.parametrize("case", sorted(EXPIRY))
def test_approvals_expire(case: str) -> None:
    later, missing = EXPIRY[case]
    ledger = ledger_of(approval("k1", "c1"), approval("k2", "c2"))
    needed = approvals_needed(ledger, "production", TWO_APPROVERS, NOW + later)
    assert needed.missing == missing
    assert needed.done is (missing == {"approver": 0})


REVOKED: dict[str, tuple[str, tuple[str, ...] | None, tuple[str, ...], dict[str, int]]] = {
    # case: (key revoked, steps still pending, command ids removed, still missing)
    "a key's pending approvals go": ("k1", None, ("c1", "c3"), {"approver": 1}),
    "only of the steps still pending": ("k1", ("production",), ("c1",), {"approver": 1}),
    "another key's stay": ("k9", None, (), {"approver": 0}),
}


@pytest.mark.parametrize("case", sorted(REVOKED))
def test_revoke(case: str) -> None:
    key, steps, removed, missing = REVOKED[case]
    ledger = ledger_of(
        approval("k1", "c1"), approval("k2", "c2"), approval("k1", "c3", step="staging")
    )
    after, gone = revoke(ledger, key, steps)
    assert tuple(a.command_id for a in gone) == removed
    assert approvals_needed(after, "production", TWO_APPROVERS, NOW).missing == missing
    assert after.seen == ledger.seen  # a revoked key's commands stay decided


def test_who_has_approved_and_what_is_missing_per_role() -> None:
    ledger = ledger_of(
        approval("k1", "c1"), approval("k2", "c2", role="security"), gate=WITH_SECURITY
    )
    needed = approvals_needed(ledger, "production", WITH_SECURITY, NOW)
    assert needed.approved == {"approver": ("op-k1 (k1)",), "security": ("op-k2 (k2)",)}
    assert needed.summary() == "1 more from approver"
    assert approvals_needed(Ledger(), "production", WITH_SECURITY, NOW).summary() == (
        "2 more from approver, 1 more from security"
    )


def test_the_ledger_remembers_a_bounded_number_of_command_ids() -> None:
    ledger = Ledger()
    for i in range(MAX_SEEN + 10):
        ledger = ledger.saw(f"c{i}")
    assert len(ledger.seen) == MAX_SEEN
    assert ledger.seen[0] == "c10"
    assert ledger.saw("c11") is ledger


BAD_GATES: dict[str, tuple[dict[str, Any], str]] = {
    "no roles": ({"needs": []}, "needs"),
    "a count of zero": ({"needs": [{"role": "approver", "count": 0}]}, "needs.0.count"),
    "eleven": ({"needs": [{"role": "approver", "count": 11}]}, "needs.0.count"),
    "a role twice": (
        {"needs": [{"role": "approver"}, {"role": "approver", "count": 2}]},
        "needs.1.role",
    ),
    "an expiry under a minute": (
        {"needs": [{"role": "approver"}], "expires_after": "30s"},
        "expires_after",
    ),
    "an expiry past thirty days": (
        {"needs": [{"role": "approver"}], "expires_after": "31d"},
        "expires_after",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_GATES))
def test_refused_gates(case: str) -> None:
    data, field = BAD_GATES[case]
    with pytest.raises(ValidationError) as caught:
        ApprovalGate.model_validate(data)
    assert field in str(caught.value)
