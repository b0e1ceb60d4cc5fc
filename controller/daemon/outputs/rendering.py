"""Actions into contract messages: what the engine saves in a flag's outbox.

Every message is validated against its contract model before it is saved,
like any other output, so an invalid decision or alert fails where it is
made, not in a consumer. A message is also kept small: evidence or details
past :data:`MAX_DETAIL_BYTES` are replaced by a note of their size and
digest, so no decision grows too large to publish.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime

import orjson
from pydantic import BaseModel

from controller.core.rollouts import Action, PublishFlagState, RaiseAlert, Rollout
from controller.core.wire import (
    Alert,
    Decision,
    DecisionEvidence,
    FlagState,
    JsonObject,
    RolloutEvidence,
    TruncatedEvidence,
)
from controller.ports import OutboxMessage
from controller.settings import TopicSettings

MAX_DETAIL_BYTES = 64 * 1024
"""The most a decision's evidence or an alert's details may take, as JSON."""


def render(
    flag: str,
    rollout: Rollout | None,
    actions: list[Action],
    now: datetime,
    topics: TopicSettings,
) -> list[OutboxMessage]:
    """The messages ``actions`` publish, in order, keyed by ``flag``."""
    out: list[OutboxMessage] = []
    for action in actions:
        topic, message = _message(flag, rollout, action, now, topics)
        out.append(OutboxMessage(topic, flag, message.model_dump_json().encode()))
    return out


def flag_state_fields(rollout: Rollout) -> JsonObject:
    """What apps need of a rollout to assign arms: the fields of a flag state.

    A targeted rollout's state carries its audience and rings, and percent 0:
    a client that does not read rings serves control rather than treatment to
    everyone (``docs/clients.md``, "Rings"). A plan's declared arm values go
    with every state of its rollout (``docs/clients.md``, "Arm values"), and so
    do its prerequisites (``docs/clients.md``, "Prerequisites") and its holdout
    (``docs/clients.md``, "Holdouts").
    """
    fields: JsonObject = {
        "flag": rollout.flag,
        "version": rollout.flag_version,
        "status": rollout.flag_status.value,
        "percent": rollout.percent,
        "salt": rollout.salt,
        "rollout_id": rollout.rollout_id,
        "stage": rollout.stage,
    }
    rings = rollout.rings()
    if rings is not None:
        audience = rollout.plan.audience
        fields["percent"] = 0.0
        fields["audience"] = None if audience is None else audience.model_dump(by_alias=True)
        fields["rings"] = [ring.model_dump(by_alias=True) for ring in rings]
    values = rollout.plan.arm_values
    if values is not None:
        fields["values"] = values.model_dump()
    if rollout.plan.requires:
        fields["requires"] = [needed.model_dump() for needed in rollout.plan.requires]
    if rollout.plan.holdout is not None:
        fields["holdout"] = rollout.plan.holdout.model_dump()
    return fields


def render_alert(
    flag: str | None, action: RaiseAlert, now: datetime, topics: TopicSettings
) -> OutboxMessage:
    """An alert that may concern no flag (``flag`` None), keyed by the flag or by its kind."""
    alert = {
        "type": "alert",
        "v": 1,
        "id": uuid.uuid4().hex,
        "ts": now,
        "flag": flag,
        "severity": action.severity,
        "kind": action.kind,
        "summary": action.summary[:500],
        "details": _bounded(action.details),
    }
    value = Alert.model_validate(alert).model_dump_json().encode()
    return OutboxMessage(topics.alerts, flag or action.kind, value)


def _message(
    flag: str, rollout: Rollout | None, action: Action, now: datetime, topics: TopicSettings
) -> tuple[str, BaseModel]:
    """The contract message for ``action`` and the topic it goes to."""
    common: dict[str, object] = {"v": 1, "id": uuid.uuid4().hex, "ts": now, "flag": flag}
    common["rollout_id"] = rollout.rollout_id if rollout else None
    if isinstance(action, PublishFlagState):
        assert rollout is not None  # the machine only publishes a state it has
        state = {**common, "type": "flag_state", **flag_state_fields(rollout)}
        return topics.flag_state, FlagState.model_validate(state)
    if isinstance(action, RaiseAlert):
        alert = {
            "type": "alert",
            "severity": action.severity,
            "kind": action.kind,
            "summary": action.summary[:500],
            "details": _bounded(action.details),
        }
        return topics.alerts, Alert.model_validate({**common, **alert})
    decision = {
        "type": "decision",
        "kind": action.kind,
        "action": action.action,
        "outcome": action.outcome,
        "reason": action.reason[:500],
        "stage": action.stage,
        "phase_before": action.phase_before,
        "phase_after": action.phase_after,
        "command_id": action.command_id,
        "evidence": _bounded_evidence(action.evidence),
    }
    return topics.decisions, Decision.model_validate({**common, **decision})


def _bounded(data: JsonObject) -> JsonObject:
    """``data``, or a note of its size and digest when it is too large to publish."""
    note = _too_large(data)
    return data if note is None else note.wire()


def _bounded_evidence(evidence: RolloutEvidence) -> DecisionEvidence:
    """``evidence``, or the note of its size and digest when it is too large to publish."""
    note = _too_large(evidence.wire())
    return evidence if note is None else note


def _too_large(data: Mapping[str, object]) -> TruncatedEvidence | None:
    """The note that replaces ``data`` past :data:`MAX_DETAIL_BYTES`; None below."""
    raw = orjson.dumps(data, default=str)
    if len(raw) <= MAX_DETAIL_BYTES:
        return None
    return TruncatedEvidence(
        truncated=True,
        bytes=len(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
        keys=sorted(str(k)[:64] for k in data)[:50],
    )
