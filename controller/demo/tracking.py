"""What the controller published, folded per flag: decisions, advisor opinions, alerts.

Pure: :meth:`Tracker.observe` takes one decoded message from the decisions,
alerts or flag-state topic; the demo's view and summary read the result.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from controller.core.stats import NO_CONTROL
from controller.core.wire import (
    AdvisorReply,
    Alert,
    Decision,
    GuardrailTest,
    RolloutEvidence,
    decision_or_alert,
)

ROLLBACK = "rollback"


@dataclass
class FlagRecord:
    """Everything published about one flag so far."""

    decisions: int = 0
    advice: list[AdvisorReply] = field(default_factory=list)
    """The advisor's part of each decision that carried one, oldest first."""
    alerts: list[dict[str, Any]] = field(default_factory=list)
    rollback_reason: str | None = None
    last_reason: str = ""
    evidence: RolloutEvidence | None = None
    """The latest gate evidence that tested the error rate: a comparison of the arms, or,
    where a ring serves all of its audience, a test against the plan's limit."""
    state: dict[str, Any] | None = None
    concluded: bool = False
    """The decision that ended the rollout (complete, rollback, abort, kill) was seen."""

    def advice_counts(self) -> Counter[str]:
        """How often the advisor said advance, hold or rollback, or was unavailable."""
        return Counter(_advice_action(a) for a in self.advice)

    def rollback_alerted(self) -> bool:
        return any(a.get("kind") == ROLLBACK for a in self.alerts)


class Tracker:
    """Folds the output topics' messages into one :class:`FlagRecord` per flag."""

    def __init__(self) -> None:
        self.flags: dict[str, FlagRecord] = {}
        self.messages = 0

    def record(self, flag: str) -> FlagRecord:
        """The record of ``flag`` (empty until something about it is published)."""
        return self.flags.setdefault(flag, FlagRecord())

    def observe(self, message: dict[str, Any]) -> None:
        """Fold one message from the decisions, alerts or flag-state topic.

        A decision or alert is read as its contract says (:class:`Decision`,
        :class:`Alert`); one that breaks it is skipped.
        """
        flag = message.get("flag")
        if not isinstance(flag, str):
            return
        self.messages += 1
        read = decision_or_alert(message)
        if isinstance(read, Decision):
            _decision(self.record(flag), read)
        elif isinstance(read, Alert):
            self.record(flag).alerts.append(message)
        elif message.get("type") == "flag_state":
            self.record(flag).state = message


_ENDED = frozenset({"completed", "rolled_back", "aborted", "killed"})


def _decision(record: FlagRecord, decision: Decision) -> None:
    record.decisions += 1
    evidence = decision.evidence
    if not isinstance(evidence, RolloutEvidence):
        return
    if evidence.advisor is not None:
        record.advice.append(evidence.advisor)
    if decision.outcome != "applied":
        return
    record.last_reason = decision.reason
    record.concluded = decision.phase_after in _ENDED
    if decision.action == ROLLBACK:
        record.rollback_reason = record.last_reason
    if _compares_arms(evidence) or evidence.comparison == NO_CONTROL:
        record.evidence = evidence


def _compares_arms(evidence: RolloutEvidence) -> bool:
    """Whether the error-rate test ran with data in both arms (not at 100%, say)."""
    test = (evidence.guardrails or {}).get("error_rate")
    return isinstance(test, GuardrailTest) and math.isfinite(test.half_width)


def _advice_action(advice: AdvisorReply) -> str:
    return (advice.action or "?") if advice.status == "ok" else "unavailable"
