"""The health-action policy: per trigger, what a rollout does — roll back, hold or warn.

A plan may name, per trigger, one of three actions:

* ``rollback`` — roll the rollout back at once (critical alert);
* ``hold`` — pause with the reason and an alert; only an operator resumes it;
* ``warn`` — alert (once per stage) and carry on as the statistics say.

The defaults are the controller's fixed behaviour before the policy existed:

======================== ========= =============================================
trigger                  default   as before
======================== ========= =============================================
guardrail_regression     rollback  each guardrail's ``action`` (``pause`` = hold);
                                   in a watch, ``watch.on_regression``
                                   (``alert`` = warn)
sample_ratio_mismatch    hold      the plan's ``srm_action`` (``pause`` = hold)
units_in_both_arms       warn      new: alert when more than
                                   ``both_arms_max_share`` of a stage's units
                                   were seen in both arms
no_traffic               hold      pause once ``no_traffic_grace`` passed with
                                   no events in the stage
inconclusive             hold      past a stage's ``max_duration`` without a
                                   decision (its guardrails untested, its
                                   sample short): the stage ends
                                   inconclusive and pauses; it never
                                   promotes, whatever the action (``warn``
                                   alerts "stuck" once and keeps holding)
advisor_unavailable      warn      alert; the gates proceed on the statistics
backend_drift            hold      pause: a person changed what the flag
                                   platform serves
======================== ========= =============================================

Which entry decided is named in the decision's evidence
(:meth:`Applied.evidence`): the most specific one set wins — a guardrail's own
``action: pause`` (or, in a watch, ``watch.on_regression: alert``), then the
plan's ``health_policy`` entry, then ``srm_action: rollback``, then the
default. Only a word other than the older field's default counts: a stored
plan carries every field, so a default cannot be told from a written one. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.core.wire import JsonObject, PolicyEntry

Trigger = Literal[
    "guardrail_regression",
    "sample_ratio_mismatch",
    "units_in_both_arms",
    "no_traffic",
    "inconclusive",
    "advisor_unavailable",
    "backend_drift",
]
TRIGGERS: tuple[Trigger, ...] = (
    "guardrail_regression",
    "sample_ratio_mismatch",
    "units_in_both_arms",
    "no_traffic",
    "inconclusive",
    "advisor_unavailable",
    "backend_drift",
)
HealthAction = Literal["rollback", "hold", "warn"]

DEFAULTS: dict[Trigger, HealthAction] = {
    "guardrail_regression": "rollback",
    "sample_ratio_mismatch": "hold",
    "units_in_both_arms": "warn",
    "no_traffic": "hold",
    "inconclusive": "hold",
    "advisor_unavailable": "warn",
    "backend_drift": "hold",
}
"""What each trigger did before a plan could choose (see the module)."""


# Why a rollout is paused: a trigger its policy holds on (the machine's health step maps
# each to its reason), an operator, an approval or the advisor awaited, or a monitor.
class PauseReason(StrEnum):
    OPERATOR = "operator"
    SRM = "srm"
    AWAITING_APPROVAL = "awaiting_approval"
    ADVISOR_OBJECTION = "advisor_objection"
    NO_TRAFFIC = "no_traffic"
    GUARDRAIL = "guardrail"
    BACKEND_DRIFT = "backend_drift"
    UNITS_IN_BOTH_ARMS = "units_in_both_arms"
    INCONCLUSIVE = "inconclusive"
    ADVISOR_UNAVAILABLE = "advisor_unavailable"
    MONITOR = "monitor"
    """A monitor's ``down`` with ``action: hold`` (an aborted deploy of the flag's service)."""


_OLD_WORDS: dict[str, HealthAction] = {"pause": "hold", "alert": "warn", "rollback": "rollback"}


class HealthPolicy(BaseModel):
    """A plan's choice of action per trigger; an entry left out keeps the default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    guardrail_regression: HealthAction | None = None
    sample_ratio_mismatch: HealthAction | None = None
    units_in_both_arms: HealthAction | None = None
    no_traffic: HealthAction | None = None
    inconclusive: HealthAction | None = None
    advisor_unavailable: HealthAction | None = None
    backend_drift: HealthAction | None = None
    both_arms_max_share: float = Field(
        default=0.01,
        gt=0,
        le=0.5,
        allow_inf_nan=False,
        description="The share of a stage's units seen in both arms past which it triggers.",
    )


@dataclass(frozen=True, slots=True)
class Applied:
    """The action a trigger takes, and the policy entry that chose it."""

    trigger: Trigger
    action: HealthAction
    entry: str
    """``health_policy.no_traffic``, ``guardrails.0.action``, ``srm_action`` or ``default``."""

    def evidence(self) -> JsonObject:
        """The policy entry as an alert's details carry it."""
        return {"trigger": self.trigger, "action": self.action, "policy_entry": self.entry}

    def part(self) -> PolicyEntry:
        """The policy entry as a gate's evidence carries it."""
        return PolicyEntry(trigger=self.trigger, action=self.action, policy_entry=self.entry)


def decide(
    trigger: Trigger,
    policy: HealthPolicy | None,
    *,
    specific: tuple[str, str] | None = None,
    fallback: tuple[str, str] | None = None,
) -> Applied:
    """The action for ``trigger``: ``specific`` (entry, action) first, then the policy's
    entry, then ``fallback`` (an older plan field), then the default.

    Older fields' words are read as actions: ``pause`` is hold, ``alert`` is warn.
    """
    if specific is not None:
        return Applied(trigger, _action(specific[1]), specific[0])
    chosen = getattr(policy, trigger) if policy is not None else None
    if chosen is not None:
        return Applied(trigger, chosen, f"health_policy.{trigger}")
    if fallback is not None:
        return Applied(trigger, _action(fallback[1]), fallback[0])
    return Applied(trigger, DEFAULTS[trigger], "default")


def _action(word: str) -> HealthAction:
    return _OLD_WORDS[word]


@dataclass(frozen=True, slots=True)
class HealthWords:
    """What a plan wrote that chooses a trigger's action: its ``health_policy`` and the
    older fields the policy took over (``Plan.health_words``)."""

    health_policy: HealthPolicy | None = None
    srm_action: str = "pause"
    guardrail_actions: tuple[str, ...] = ()
    """Each guardrail's ``action``, in the plan's order."""
    on_regression: str | None = None
    """The watch's ``on_regression``; None without a watch."""


def action_for(
    words: HealthWords, trigger: Trigger, *, guardrail: int | None = None, watching: bool = False
) -> Applied:
    """The action a plan that wrote ``words`` takes on ``trigger`` (for a guardrail: its
    index in the plan)."""
    policy = words.health_policy
    if trigger == "guardrail_regression":
        return decide(trigger, policy, specific=_guardrail_entry(words, guardrail, watching))
    if trigger == "sample_ratio_mismatch":
        explicit = words.srm_action != "pause"
        return decide(
            trigger, policy, fallback=("srm_action", words.srm_action) if explicit else None
        )
    return decide(trigger, policy)


def _guardrail_entry(
    words: HealthWords, index: int | None, watching: bool
) -> tuple[str, str] | None:
    """A guardrail's own word, where the plan says other than the default.

    Only a word other than the default counts as written: a plan is stored and
    sent in full, so once saved a default cannot be told from a word the
    author wrote. As before the policy: a guardrail that pauses pauses, in a
    watch too; the watch's ``on_regression: alert`` replaces only a rollback.
    """
    actions = words.guardrail_actions
    action = actions[index] if index is not None and 0 <= index < len(actions) else None
    if action == "pause":
        return f"guardrails.{index}.action", action
    if watching and words.on_regression == "alert":
        return "watch.on_regression", words.on_regression
    return None


def both_arms_tripped(both: int, units: int, policy: HealthPolicy | None) -> bool:
    """Whether ``both`` of a stage's ``units`` seen in both arms is past the policy's share."""
    share = policy.both_arms_max_share if policy is not None else HealthPolicy().both_arms_max_share
    return units > 0 and both / units > share
