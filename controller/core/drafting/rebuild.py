"""Rebuilding every flag a lost store took, at its last decision, from the topics.

Redis is a cache of the topics. What a flag's rollout was is on the decisions
topic (each decision records the state it left its flag in: ``rollout_id``,
``phase_after``, ``stage``), the plan it was started with is the ``plan`` of the
start command its start decision names (the commands topic), and the salt its
units were bucketed with is on the flag-state topic. :class:`TopicHistory`
keeps, for every flag, what those three topics say, record by record, and
:meth:`TopicHistory.rebuild` turns it into the steps of a restore
(:func:`~controller.core.drafting.restore.plan_restore`, the path ``rolloutctl
restore`` takes) for a flag the store no longer knows: its plan started again
and promoted to its stage (or to the end), paused again if it was, under the same
rollout id and salt, so that units keep their arms.

A flag whose rollout ended (killed, rolled back, aborted) is not rebuilt: no
rollout is started only to be ended (it would serve its first stage between the
two), so its last state is served from memory until an operator decides. A
flag whose plan is not known (its start command no longer on the commands topic)
is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from controller.core.drafting.restore import (
    ENDINGS,
    FlagNow,
    FlagThen,
    RestorePlan,
    RestoreRefusal,
)
from controller.core.drafting.restore import (
    plan_restore as restore_steps,
)
from controller.core.rollouts import Plan
from controller.core.wire import JsonObject


@dataclass(frozen=True, slots=True)
class Rebuild:
    """How one flag is rebuilt: the steps, the rollout id and salt its start takes, and the
    start command whose id its start decision carries."""

    flag: str
    then: FlagThen
    plan: RestorePlan
    rollout_id: str
    salt: str | None
    start_command: str | None


@dataclass(slots=True)
class TopicHistory:
    """What the decisions, commands and flag-state topics say of every flag."""

    last: dict[str, FlagThen] = field(default_factory=dict)
    """Each flag's last decision that records the state it left the flag in."""
    starts: dict[str, str] = field(default_factory=dict)
    """Each rollout's start command id, by rollout id."""
    plans: dict[str, JsonObject] = field(default_factory=dict)
    """Each start command's plan, by command id."""
    salts: dict[tuple[str, str], str] = field(default_factory=dict)
    """Each (flag, rollout id)'s salt, from its flag states."""

    def take_decision(self, value: bytes | None) -> None:
        data = _object(value)
        flag, rollout_id = data.get("flag"), data.get("rollout_id")
        if data.get("type") != "decision" or not isinstance(flag, str):
            return
        started = data.get("action") == "start" and data.get("outcome") == "applied"
        if started and isinstance(rollout_id, str) and isinstance(data.get("command_id"), str):
            self.starts[rollout_id] = str(data["command_id"])
        phase, stage = data.get("phase_after"), data.get("stage")
        if not isinstance(phase, str) or data.get("kind") in ("segment", "app_key", "pipeline"):
            return
        self.last[flag] = FlagThen(
            str(data.get("id") or ""),
            rollout_id if isinstance(rollout_id, str) else None,
            phase,
            stage if isinstance(stage, int) and not isinstance(stage, bool) else None,
        )

    def take_command(self, value: bytes | None) -> None:
        data = _object(value)
        plan, command_id = data.get("plan"), data.get("id")
        if data.get("action") == "start" and isinstance(plan, dict) and isinstance(command_id, str):
            self.plans[command_id] = plan

    def take_flag_state(self, value: bytes | None) -> None:
        data = _object(value)
        flag, rollout_id, salt = data.get("flag"), data.get("rollout_id"), data.get("salt")
        if isinstance(flag, str) and isinstance(rollout_id, str) and isinstance(salt, str):
            self.salts[(flag, rollout_id)] = salt

    def plan_of(self, rollout_id: str | None) -> Plan | None:
        """The plan ``rollout_id`` was started with, where its start command is still read."""
        plan = self.plans.get(self.starts.get(str(rollout_id), ""))
        try:
            return None if plan is None else Plan.model_validate(plan)
        except ValueError:
            return None

    def flags(self) -> Iterator[str]:
        """Every flag a decision left in a state, in order."""
        yield from sorted(self.last)

    def rebuild(self, flag: str) -> Rebuild | RestoreRefusal:
        """How ``flag``, which the store no longer knows, is rebuilt at its last decision."""
        last = self.last.get(flag)
        if last is None:
            return RestoreRefusal(f"no decision of {flag} records the state it left it in")
        if last.phase in ENDINGS:
            return RestoreRefusal(
                f"its rollout {last.rollout_id} was {last.phase}: no rollout is started only to"
                " be ended, so its last state is served until an operator decides"
            )
        then = FlagThen(
            last.decision_id, last.rollout_id, last.phase, last.stage, self.plan_of(last.rollout_id)
        )
        steps = restore_steps(then, FlagNow(exists=False))
        if isinstance(steps, RestoreRefusal):
            return steps
        rollout_id = last.rollout_id or ""
        salt = self.salts.get((flag, rollout_id))
        return Rebuild(flag, then, steps, rollout_id, salt, self.starts.get(rollout_id))


def _object(value: bytes | None) -> JsonObject:
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}
