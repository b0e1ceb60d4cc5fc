"""What an approval by several people is: the gate a step or a stage sets, and the ledger.

A pipeline's step (:mod:`controller.core.release`) or a plan's stage may need
approvals from N distinct operators holding a role (:class:`ApprovalGate`).
Each approval is a signed ``approve`` command, kept in a :class:`Ledger` as an
:class:`Approval`: what it approves (a pipeline step, named by its
environment, or a rollout's stage, ``stage-2``), the key, the person who holds
it (the key registry's ``holder``; a key naming none is its own holder), the
operator, the role it was given under, the command's id, and when. The ledger is stored
with the run or the rollout it belongs to, in the same write as the
decisions that count it. The rules that keep it (a person counts once, a replay
counts nothing, approvals expire, a revoked key's are removed) are in
:mod:`controller.core.release.approvals`. Pure data.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from controller.core.common import Actor, EnvironmentName, MessageId, ReadableDuration
from controller.core.wire import ApprovalRecord

ROLE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
MAX_APPROVALS = 64
"""Live approvals a ledger holds; past this one is refused (no step needs so many)."""
MAX_SEEN = 512
"""Command ids remembered; older ones are refused at the command intake as stale."""
MAX_COUNT = 10

RoleName = Annotated[str, Field(min_length=1, max_length=32, pattern=ROLE_PATTERN)]
HOLDER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$"
HolderName = Annotated[str, Field(min_length=1, max_length=64, pattern=HOLDER_PATTERN)]
"""The person an operator key belongs to (``ana``, ``ana@example.com``)."""
ApprovalTtl = Annotated[
    timedelta,
    ReadableDuration,
    Field(ge=timedelta(minutes=1), le=timedelta(days=30)),
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ApprovalRule(_Frozen):
    """``count`` distinct people (key holders) approving under ``role``."""

    role: RoleName
    count: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 1


class ApprovalGate(_Frozen):
    """The approvals a step needs before it starts, and how long each stays valid."""

    needs: Annotated[tuple[ApprovalRule, ...], Field(min_length=1, max_length=4)]
    expires_after: ApprovalTtl = Field(
        default=timedelta(hours=24), description="An approval older than this counts nothing."
    )

    @model_validator(mode="after")
    def _roles_once(self) -> Self:
        roles = [rule.role for rule in self.needs]
        for i, role in enumerate(roles):
            if role in roles[:i]:
                raise ValueError(f"needs.{i}.role: {role!r} is named twice")
        return self

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(rule.role for rule in self.needs)


class Approval(_Frozen):
    """One operator's signed ``approve`` of a step (an environment) or a stage (``stage-N``)."""

    step: EnvironmentName
    key_id: Annotated[str, Field(min_length=1, max_length=64)]
    operator: Actor
    role: RoleName
    command_id: MessageId
    at: AwareDatetime
    holder: HolderName | None = None
    """Who holds the key, from the key registry; None (and in ledgers stored before
    keys named holders): the key is its own holder."""

    @property
    def person(self) -> str:
        """Who the approval counts for: the key's holder, else the key itself."""
        return self.holder or self.key_id

    def live(self, gate: ApprovalGate, now: datetime) -> bool:
        return self.at <= now < self.at + gate.expires_after

    def evidence(self) -> ApprovalRecord:
        """The approval as a decision's evidence carries it."""
        return ApprovalRecord(
            operator=self.operator,
            key_id=self.key_id,
            holder=self.person,
            role=self.role,
            command_id=self.command_id,
            at=self.at.isoformat(),
        )


class Ledger(_Frozen):
    """The approvals given in one pipeline run or rollout, and the command ids decided."""

    approvals: Annotated[tuple[Approval, ...], Field(max_length=MAX_APPROVALS)] = ()
    seen: Annotated[tuple[MessageId, ...], Field(max_length=MAX_SEEN)] = ()

    def saw(self, command_id: str) -> Ledger:
        """The ledger, with ``command_id`` decided (counted or refused)."""
        if command_id in self.seen:
            return self
        return self.model_copy(update={"seen": (*self.seen, command_id)[-MAX_SEEN:]})

    def live(self, step: str, gate: ApprovalGate, now: datetime) -> tuple[Approval, ...]:
        return tuple(a for a in self.approvals if a.step == step and a.live(gate, now))


def stage_step(stage: int) -> str:
    """The ledger's name of a rollout's stage (from 0): ``stage-0``."""
    return f"stage-{stage}"
