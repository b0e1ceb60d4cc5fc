"""What differs between the desired state and the live controller, and what to do about it.

Each live object keeps the digest of the desired object ``rolloutctl apply``
last made it from (``applied``; none when it was made or changed by hand since).
So the digests alone tell, with no content compared:

- no live object: **create** it;
- the live digest is the desired one: **in sync**, whatever its phase, stage or
  verdict (status, not drift: a rollout rolled back by its gate is not restarted);
- the live digest is another apply's: the files changed, **update** it;
- no live digest: it was made or changed by hand: **held**, reported and left
  alone, unless ``--force`` (then it is replaced as an update would);
- a rollout or pipeline still running cannot take another plan: **blocked**
  until it ends or is aborted, forced or not;
- one that completed is **held** when its file changes: starting it again would
  take the flag from everyone back to the first stage, so only ``--force`` does.

An app key revoked since apply made it counts as changed by hand. A rollout in
sync that a person steered since (promoted to a next stage, paused, resumed,
killed, rolled back, aborted, promoted to the end) stays in sync, since apply would
send nothing, but its line says so (:func:`steered`): the live state is not the
files'. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from controller.ctl.gitops.desired import Desired


class Change(StrEnum):
    IN_SYNC = "in sync"
    CREATE = "create"
    UPDATE = "update"
    HELD = "changed by hand"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Live:
    """What the controller shows of one object: its apply digest, whether it still runs (a
    rollout or pipeline) or is in force (an app key), and its state in words."""

    applied: str | None
    running: bool = False
    completed: bool = False
    revoked: bool = False
    state: str = ""
    key_id: str | None = None
    """An app key's public id (what a replacement revokes)."""
    steered: str | None = None
    """A rollout's change by hand since it was started, in words (:func:`steered`)."""


@dataclass(frozen=True)
class Item:
    """One desired object: what differs, why, and whether apply sends its commands."""

    desired: Desired
    change: Change
    why: str
    send: bool
    live: Live | None = None

    @property
    def differs(self) -> bool:
        return self.change is not Change.IN_SYNC

    @property
    def noted(self) -> bool:
        """Shown without ``--verbose``: it differs, or a person steered it since."""
        return self.differs or (self.live is not None and self.live.steered is not None)


@dataclass(frozen=True)
class Move:
    """An operator's command that changed a running rollout's course, as the controller
    kept it: ``action`` promote, pause or resume, at ``stage`` (in words)."""

    action: str
    at: datetime | None
    actor: str | None
    reason: str = ""
    stage: str | None = None


MOVED = {"promote": "promoted from", "pause": "paused at", "resume": "resumed at"}
"""A kept command, as the change by hand it made is said (before the stage it was sent at)."""

STEERED = {
    "killed": "killed",
    "rolled_back": "rolled back",
    "aborted": "aborted",
    "completed": "promoted to the end",
}
"""A finished rollout's phase, as the change by hand that ended it is said."""


def steered(
    phase: str,
    *,
    actor: str | None,
    at: datetime | None,
    reason: str | None,
    pause_reason: str | None = None,
    moves: Sequence[Move] = (),
) -> str | None:
    """How people changed a rollout since it started, oldest first (``promoted from stage
    1/4 (1%) 2025-05-01 14:02Z by ana (looks fine); killed 2025-05-01 15:10Z by bob (bad
    errors)``), or None: nobody did. ``moves`` are the commands that changed its course
    while it ran. A finished rollout was ended by a person when the decision that ended it
    names who sent it (``actor``; a gate's names nobody); a paused one was paused by a
    person when its pause is an operator's (said from its last move when one says so)."""
    said = [_said(f"{MOVED.get(m.action, m.action)} {m.stage or 'its stage'}", m) for m in moves]
    if phase == "paused" and pause_reason == "operator":
        if not moves or moves[-1].action != "pause":
            said.append("paused by an operator")
    elif (what := STEERED.get(phase)) is not None and actor:
        said.append(_said(what, Move(phase, at, actor, reason or "")))
    return "; ".join(said) or None


def _said(what: str, move: Move) -> str:
    at = move.at
    when = f" {at.astimezone(UTC).strftime('%Y-%m-%d %H:%MZ')}" if at is not None else ""
    who = f" by {move.actor}" if move.actor else ""
    why = f" ({move.reason})" if move.reason else ""
    return f"{what}{when}{who}{why}"


def compare(desired: Desired, live: Live | None, *, force: bool = False) -> Item:
    """What to do about ``desired`` given its ``live`` object (None: there is none)."""
    if live is None:
        return Item(desired, Change.CREATE, "not on the controller", send=True)
    if live.applied == desired.digest and not live.revoked:
        why = live.state or "as applied"
        why += f"; changed by hand: {live.steered}" if live.steered else ""
        return Item(desired, Change.IN_SYNC, why, send=False, live=live)
    if live.running:
        why = f"{live.state or 'running'}: a running {_what(desired)} takes no other plan; "
        why += f"it ends by itself, or `{_abort_hint(desired)}`, then apply"
        return Item(desired, Change.BLOCKED, why, send=False, live=live)
    held = _held_because(live)
    if held is not None:
        return _by_hand(desired, live, held, force=force)
    why = "the files changed since the last apply"
    return Item(desired, Change.UPDATE, why, send=True, live=live)


def _held_because(live: Live) -> str | None:
    """Why a live object that is not as applied is left alone without ``--force``."""
    if live.revoked:
        return "revoked since it was applied"
    if live.applied is None:
        return "made or changed by hand since the last apply"
    if live.completed:
        return "completed: starting it again takes the flag back to its first stage"
    return None


def _by_hand(desired: Desired, live: Live, why: str, *, force: bool) -> Item:
    if force:
        return Item(desired, Change.UPDATE, f"{why}; replaced (--force)", send=True, live=live)
    return Item(
        desired, Change.HELD, f"{why}; left alone (--force replaces it)", send=False, live=live
    )


def _what(desired: Desired) -> Literal["rollout", "pipeline", "object"]:
    if desired.kind in ("rollout", "pipeline"):
        return desired.kind
    return "object"


def _abort_hint(desired: Desired) -> str:
    flag, _, environment = desired.name.partition("@")
    where = f" --environment {environment}" if environment else ""
    return f"rolloutctl abort {flag}{where}"


def plan(
    objects: list[Desired], live: dict[str, Live | None], *, force: bool = False
) -> list[Item]:
    """Every desired object compared with its live one (by :attr:`Desired.label`)."""
    return [compare(d, live.get(d.label), force=force) for d in objects]


SENT_IN_ORDER = ("segment", "app_key", "pipeline", "rollout")
"""What apply sends first: segments and keys before the rollouts whose audiences name them."""


def in_sending_order(items: list[Item]) -> list[Item]:
    """``items`` in :data:`SENT_IN_ORDER`, each kind in the order it came."""
    return sorted(items, key=lambda item: SENT_IN_ORDER.index(item.desired.kind))


def exit_code(items: list[Item]) -> int:
    """0 when nothing differs, 1 when something does (sent or held)."""
    return 1 if any(item.differs for item in items) else 0
