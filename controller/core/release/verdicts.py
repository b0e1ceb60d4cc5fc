"""Whether something may happen: :class:`Allowed`, or :class:`Refused` with the reason.

Shared by the permission check (:func:`controller.core.release.roles.may`)
and the approvals ledger, whose refusals become rejected decisions, as a
refused command does today.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Allowed:
    """It may happen; ``reason`` says which grant allowed it (for the evidence)."""

    reason: str = ""

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Refused:
    """It may not happen, and why (the decision's reason)."""

    reason: str

    def __bool__(self) -> bool:
        return False


Verdict = Allowed | Refused
