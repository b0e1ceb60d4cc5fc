"""A flag's verdict for a deploy gate: has its rollout ended, and did it end well.

A deploy tool (an Argo Rollouts ``AnalysisTemplate``, a Kargo verification, a CI
job) polls ``GET /rollouts/{flag}/verdict`` and waits on two booleans: ``done``
once the rollout has ended, and ``ok`` when it ended by completing. Anything
short of an ending (a stage held by the gate, an inconclusive test, a pause, a
scheduled start, the watch after the last stage) is ``done: false``, so a gate
that waits on ``done and ok`` never promotes on a rollout still deciding, and
one that fails on ``done and not ok`` fails on a rollback, kill or abort only.

Pure: the route hands in the fields of the rollout's status.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from controller.core.rollouts.rollout import Phase

ENDED_BADLY = {
    Phase.ROLLED_BACK.value: "rolled back",
    Phase.KILLED.value: "killed",
    Phase.ABORTED.value: "aborted",
}
_ENDED = {Phase.COMPLETED.value: "completed", **ENDED_BADLY}
_GATE = {"hold": "held by the gate", "pause": "about to pause"}
MAX_REASON = 500


class DeployVerdict(BaseModel):
    """``GET /rollouts/{flag}/verdict``: what a deploy gate waits on."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    done: bool = Field(
        description="The rollout has ended: completed, rolled back, killed or aborted."
    )
    ok: bool = Field(description="It ended by completing; false while not done.")
    phase: str = Field(description="The rollout's phase: pending, running, paused, completed, ...")
    reason: str = Field(description="Why, in words: the ending's reason, or what it waits for.")
    version: int = Field(description="The flag-state version the verdict was read at.")


def deploy_verdict(
    *,
    phase: str,
    pause_reason: str | None,
    gate: str | None,
    why: str | None,
    version: int,
    waiting: str | None = None,
) -> DeployVerdict:
    """The verdict of a rollout in ``phase``; ``gate`` and ``why``: the gate's view now (once
    ended, why it ended), ``waiting``: why it is not moving (its next move), if anything."""
    done, ok = phase == Phase.COMPLETED.value or phase in ENDED_BADLY, phase == Phase.COMPLETED
    reason = _reason(phase, pause_reason, gate, why or "", waiting)
    return DeployVerdict(done=done, ok=ok, phase=phase, reason=reason[:MAX_REASON], version=version)


def _reason(
    phase: str, pause_reason: str | None, gate: str | None, why: str, waiting: str | None
) -> str:
    if phase in _ENDED:
        return _joined(_ENDED[phase], why)
    if phase == Phase.PAUSED:
        return _joined(f"paused ({pause_reason or 'unknown'})", waiting or why)
    if phase == Phase.PENDING:
        return _joined("not started", waiting)
    if gate in _GATE:
        return _joined(_GATE[gate], why)
    return _joined(f"{phase}, not ended", waiting or why)


def _joined(head: str, tail: str | None) -> str:
    return f"{head}: {tail}" if tail else head


DEPLOY_VERDICT_MODELS: dict[str, type[BaseModel]] = {"http-rollout-verdict": DeployVerdict}
"""The verdict's answer by the file stem of its JSON Schema in ``schemas/``."""
