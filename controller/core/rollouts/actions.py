"""What the rollout machine asks the adapters to do: publish, record, alert."""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.core.wire import JsonObject, RolloutEvidence


@dataclass(frozen=True, slots=True)
class PublishFlagState:
    """Publish the rollout's current assignment config on the flag-state topic."""


@dataclass(frozen=True, slots=True)
class RecordDecision:
    kind: str
    action: str
    outcome: str
    reason: str
    phase_before: str | None
    phase_after: str | None
    stage: int | None = None
    command_id: str | None = None
    evidence: RolloutEvidence = field(default_factory=RolloutEvidence)


@dataclass(frozen=True, slots=True)
class RaiseAlert:
    kind: str
    severity: str
    summary: str
    details: JsonObject = field(default_factory=dict)


Action = PublishFlagState | RecordDecision | RaiseAlert
