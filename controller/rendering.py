"""Actions into contract messages: what the engine saves in a flag's outbox.

Every message is validated against its contract model before it is saved,
like any other output, so an invalid decision or alert fails where it is
made, not in a consumer.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from controller.adapters.redis_state import OutboxMessage
from controller.core.messages import Alert, Decision, FlagState
from controller.core.rollout import Action, PublishFlagState, RaiseAlert, Rollout
from controller.settings import TopicSettings


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


def _message(
    flag: str, rollout: Rollout | None, action: Action, now: datetime, topics: TopicSettings
) -> tuple[str, BaseModel]:
    """The contract message for ``action`` and the topic it goes to."""
    common: dict[str, Any] = {"v": 1, "id": uuid.uuid4().hex, "ts": now, "flag": flag}
    common["rollout_id"] = rollout.rollout_id if rollout else None
    if isinstance(action, PublishFlagState):
        assert rollout is not None  # the machine only publishes a state it has
        state = {
            "type": "flag_state",
            "version": rollout.flag_version,
            "status": rollout.flag_status,
            "percent": rollout.percent,
            "salt": rollout.salt,
            "stage": rollout.stage,
        }
        return topics.flag_state, FlagState.model_validate({**common, **state})
    if isinstance(action, RaiseAlert):
        alert = {
            "type": "alert",
            "severity": action.severity,
            "kind": action.kind,
            "summary": action.summary[:500],
            "details": action.details,
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
        "evidence": action.evidence,
    }
    return topics.decisions, Decision.model_validate({**common, **decision})
