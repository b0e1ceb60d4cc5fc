"""What the live controller holds of the desired objects, read over its HTTP API.

A rollout from ``GET /rollouts/{flag}`` (``flag@environment`` outside the default
environment), a pipeline run from ``GET /pipelines/{flag}``, segments from
``GET /v1/segments`` and app keys from ``GET /app-keys``, each with the
``applied`` digest the controller keeps with it. The bodies are read through
typed models: a pipeline run through the one the controller serves
(:class:`controller.core.reading.PipelineRun`), the others through models that
ignore what they do not need.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, ValidationError

from controller.core.common import ControllerError
from controller.core.reading import PipelineRun
from controller.ctl.gitops.desired import Desired
from controller.ctl.gitops.diffing import Live, Move, steered
from controller.ctl.looking import diagnosis

_M = TypeVar("_M", bound=BaseModel)
RUNNING_PHASES = frozenset({"pending", "running", "paused"})
"""A rollout in these still owns its flag: a start is refused until it ends."""


class _Read(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Who(_Read):
    actor: str | None = None


class _Steered(_Read):
    action: str
    at: datetime | None = None
    actor: str | None = None
    reason: str = ""
    stage: str | None = None


class RolloutRead(_Read):
    phase: str
    applied: str | None = None
    plan: str = ""
    pause_reason: str | None = None
    ended_at: datetime | None = None
    verdict_reason: str | None = None
    evidence: _Who = _Who()
    """Once finished, the ending decision's: who sent it (nobody when the gate decided)."""
    steered: list[_Steered] = []
    """Operators' commands that changed its course while it ran (an older controller: none)."""


class SegmentRead(_Read):
    name: str
    applied: str | None = None


class AppKeyRead(_Read):
    id: str
    name: str
    created_ms: int
    revoked_ms: int | None = None
    applied: str | None = None


def read_live(base: str, objects: list[Desired]) -> dict[str, Live | None]:
    """Each desired object's live counterpart, by label (None: the controller has none)."""
    found: dict[str, Live | None] = {}
    kinds = {d.kind for d in objects}
    segments = _segments(base) if "segment" in kinds else {}
    keys = _app_keys(base) if "app_key" in kinds else {}
    for desired in objects:
        if desired.kind == "segment":
            found[desired.label] = segments.get(desired.name)
        elif desired.kind == "app_key":
            found[desired.label] = keys.get(desired.name)
        else:
            found[desired.label] = _run(base, desired)
    return found


def _get(base: str, path: str, *, missing_ok: bool = False) -> Any:
    return diagnosis.get_json(base, path, timeout_s=10, missing_ok=missing_ok)


def _parsed(model: type[_M], data: Any, where: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ControllerError(f"{where}: the controller's answer is not understood: {exc}") from exc


def _run(base: str, desired: Desired) -> Live | None:
    if desired.kind == "rollout":
        return _rollout(base, desired)
    path = f"/pipelines/{quote(desired.name, safe='')}"
    body = _get(base, path, missing_ok=True)
    if body is None:
        return None
    run = _parsed(PipelineRun, body, path)
    state = f"pipeline {run.pipeline} {run.phase}"
    running, completed = run.phase == "running", run.phase == "completed"
    return Live(run.applied, running=running, completed=completed, state=state)


def _rollout(base: str, desired: Desired) -> Live | None:
    """The rollout at ``flag@environment``; in the controller's default environment, which it
    does not say, the flag's own key holds it: that one is taken when it carries this very
    rollout's digest (which covers the environment's name)."""
    found = _rollout_at(base, desired.name)
    flag, _, environment = desired.name.partition("@")
    if found is None and environment:
        own = _rollout_at(base, flag)
        found = own if own is not None and own.applied == desired.digest else None
    return found


def _rollout_at(base: str, key: str) -> Live | None:
    path = f"/rollouts/{quote(key, safe='')}"
    body = _get(base, path, missing_ok=True)
    if body is None:
        return None
    rollout: RolloutRead = _parsed(RolloutRead, body, path)
    state = f"{rollout.phase} (plan {rollout.plan})"
    running, completed = rollout.phase in RUNNING_PHASES, rollout.phase == "completed"
    by_hand = steered(
        rollout.phase,
        actor=rollout.evidence.actor,
        at=rollout.ended_at,
        reason=rollout.verdict_reason,
        pause_reason=rollout.pause_reason,
        moves=[Move(m.action, m.at, m.actor, m.reason, m.stage) for m in rollout.steered],
    )
    return Live(rollout.applied, running=running, completed=completed, state=state, steered=by_hand)


def _segments(base: str) -> dict[str, Live]:
    body = _get(base, "/v1/segments")
    rows = body.get("segments", []) if isinstance(body, dict) else []
    read = [_parsed(SegmentRead, row, "/v1/segments") for row in rows]
    return {row.name: Live(row.applied) for row in read}


def _app_keys(base: str) -> dict[str, Live]:
    """Each name's key in force, else its newest revoked one."""
    body = _get(base, "/app-keys")
    rows = body.get("keys", []) if isinstance(body, dict) else []
    read: list[AppKeyRead] = [_parsed(AppKeyRead, row, "/app-keys") for row in rows]
    found: dict[str, Live] = {}
    for key in sorted(read, key=lambda k: (k.revoked_ms is None, k.created_ms)):
        revoked = key.revoked_ms is not None
        found[key.name] = Live(key.applied, revoked=revoked, key_id=key.id)
    return found
