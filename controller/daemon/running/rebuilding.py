"""Rebuilding the flags a lost store took, without an operator, through the one writer.

When the store keeper finds the store lost (or without an identity at start),
:meth:`Rebuilder.plan` reads the decisions, commands and flag-state topics from
their beginning (:class:`~controller.core.drafting.TopicHistory`) and, for each
flag a decision left in a state that the store no longer knows, makes the steps
``rolloutctl restore`` would propose (its plan started again under the same
rollout id and salt, promoted to its stage or to the end, paused again if it
was); the start and the promotes to its stage are one start at that stage, so no
earlier stage is served between. :meth:`Rebuilder.step` applies them through
:meth:`~controller.daemon.rollouts.Rollouts.apply`, as the controller (actor
``controller``), for the flags this instance owns, every keeper look until each
is rebuilt: a flag owned by another instance is that one's to rebuild, and one
that has a state again (another instance, an operator) is left as it is.

The rebuilt rollout numbers its flag versions above every version the topics saw
(:mod:`controller.core.serving.versions`), and each promote restarts its stage's
clock: its stage counts only events served under the rebuilt split, from the
rebuild on, for its whole minimum time and sample. So a stage never advances on
the part of its lost evidence that the events log's retention still holds, and
needs none of it.
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

import structlog

from controller.adapters.kafka import read_from_beginning
from controller.core.drafting import Rebuild, RestoreRefusal, TopicHistory, stage_shown
from controller.core.machine import step as machine_step
from controller.core.rollouts import CommandInput, RaiseAlert, Rollout
from controller.core.serving import VersionFloors
from controller.core.wire import CommandAction, JsonObject
from controller.daemon.rollouts import Rollouts
from controller.daemon.serving import StoreLoss
from controller.ports import RolloutStates
from controller.settings import KafkaSettings, TopicSettings

log = structlog.get_logger("controller.daemon.running.rebuilding")
ACTOR = "controller"
READ_TIMEOUT_S = 60.0
"""The longest one read of a topic may take (a failed read is planned again next look)."""
MAX_RECORDS = 5_000_000
"""Records read at most from one topic (its retention bounds it)."""
HistoryRead = Callable[[TopicHistory, VersionFloors], Awaitable[None]]
"""Reads the decisions, commands and flag-state topics into a history and the floors."""


class Rebuilder:
    """Rebuilds, at its last decision, each flag the store lost."""

    def __init__(
        self,
        *,
        rollouts: Rollouts,
        states: RolloutStates,
        read: HistoryRead,
        owns: Callable[[str], bool],
        loss: StoreLoss,
        clock: Callable[[], datetime],
    ) -> None:
        self._rollouts, self._states, self._read = rollouts, states, read
        self._owns, self._loss, self._now = owns, loss, clock
        self.pending: dict[str, tuple[Rebuild, list[CommandInput]]] = {}
        """Each flag to rebuild, with the controller's inputs that rebuild it."""
        self.refused: dict[str, str] = {}
        """Each flag the store lost that cannot be rebuilt, and why."""
        self.kept: set[str] = set()
        """The flags the topics named at the last plan whose states the store has."""

    async def plan(self) -> dict[str, Rebuild]:
        """Read the topics; every flag to rebuild (a decision left it in a state the store
        does not have now), kept until :meth:`step` rebuilt it. Meanwhile each is served
        as it will be rebuilt, where no state of it is held from before the loss. The
        flags named whose states the store has are :attr:`kept`."""
        history, floors = TopicHistory(), VersionFloors()
        await self._read(history, floors)
        planned: dict[str, Rebuild] = {}
        previews: dict[str, Rollout] = {}
        kept: set[str] = set()
        for flag in history.flags():
            if (await self._states.load(flag)).rollout is not None:
                kept.add(flag)
                continue
            rebuild = history.rebuild(flag)
            if isinstance(rebuild, RestoreRefusal):
                self.refused[flag] = rebuild.reason
                log.warning("flag_not_rebuilt", flag=flag, why=rebuild.reason)
                continue
            planned[flag] = rebuild
            self.pending[flag] = (rebuild, self._commands(rebuild, floors.floor(flag)))
            if (preview := _preview(self.pending[flag][1])) is not None:
                previews[flag] = preview
        self._loss.hold(previews)
        self._loss.rebuilding(set(self.pending))
        self.kept = kept
        return planned

    async def step(self) -> list[str]:
        """Rebuild the pending flags this instance owns; those rebuilt (or found back)."""
        done = []
        for flag, (rebuild, commands) in sorted(self.pending.items()):
            if not self._owns(flag):
                continue
            if (await self._states.load(flag)).rollout is None:
                for command in commands:  # its clock starts now, not when it was planned
                    now = dataclasses.replace(command, now=self._now())
                    await self._rollouts.apply(flag, now)
                log.info("flag_rebuilt", flag=flag, decision=rebuild.then.decision_id)
            done.append(flag)
            del self.pending[flag]
        if done:
            self._loss.rebuilding(set(self.pending))
        return done

    def _commands(self, rebuild: Rebuild, floor: int) -> list[CommandInput]:
        """The restore's steps as the controller's inputs, its start and the promotes to
        the stage one start at that stage: one flag state, no earlier stage served."""
        salt = rebuild.salt or secrets.token_hex(8)
        reason = (
            f"rebuilt at its decision {rebuild.then.decision_id} after redis lost the"
            " controller's data"
        )
        steps = [s for s in rebuild.plan.steps if s.kind == "command"]
        staged = [s for s in steps if s.action == CommandAction.PROMOTE and not s.to_end]
        at = len(staged)
        if any(s.to_end for s in steps) and rebuild.then.plan is not None:
            at = len(rebuild.then.plan.stages) - 1  # completed: from its last stage to the end
        commands = []
        for step in [s for s in steps if s not in staged]:
            start = step.action == CommandAction.START
            command_id = (rebuild.start_command if start else None) or uuid.uuid4().hex
            expected = rebuild.rollout_id if step.new_rollout else step.expect_rollout_id
            commands.append(
                CommandInput(
                    action=CommandAction(step.action),
                    flag=rebuild.flag,
                    command_id=command_id,
                    actor=ACTOR,
                    now=self._now(),
                    reason=reason,
                    plan=step.plan,
                    to_end=step.to_end,
                    new_rollout_id=rebuild.rollout_id,
                    new_salt=salt,
                    version_floor=floor,
                    start_stage=at if start else 0,
                    expect_rollout_id=expected,
                    expect_stage=at if step.to_end else None if start else step.expect_stage,
                )
            )
        return commands


def _preview(commands: list[CommandInput]) -> Rollout | None:
    """The rollout ``commands`` make of a flag the store does not know, decided here and
    kept nowhere: what is served until the rebuild is saved."""
    rollout: Rollout | None = None
    for command in commands:
        rollout, _ = machine_step(rollout, command)
    return rollout if rollout is not None and rollout.published else None


def topic_history(
    kafka: KafkaSettings, topics: TopicSettings, *, timeout_s: float = READ_TIMEOUT_S
) -> HistoryRead:
    """What reads the decisions, commands and flag-state topics, each from its beginning."""

    async def read(history: TopicHistory, floors: VersionFloors) -> None:
        def decision(value: bytes | None) -> None:
            history.take_decision(value)
            floors.take(value)

        def flag_state(value: bytes | None) -> None:
            history.take_flag_state(value)
            floors.take(value)

        for topic, take in (
            (topics.commands, history.take_command),
            (topics.decisions, decision),
            (topics.flag_state, flag_state),
        ):
            await read_from_beginning(
                kafka, [topic], take, timeout_s=timeout_s, max_records=MAX_RECORDS
            )

    return read


def rebuild_alert(
    planned: Mapping[str, Rebuild], refused: Mapping[str, str], *, identity_lost: bool = True
) -> RaiseAlert:
    """The one alert of a store found without its identity at start (new, or it lost its
    data while no controller ran), or, ``identity_lost`` False, found at start with its
    identity and without its set of the flags (on a cluster, one master's data): each
    flag rebuilt from the topics, and each not."""
    flags: dict[str, JsonObject] = {
        flag: {
            "rollout_id": r.rollout_id,
            "phase": str(r.then.phase),
            "stage": stage_shown(r.then.stage),
            "decision": r.then.decision_id,
        }
        for flag, r in sorted(planned.items())
    }
    each = "; ".join(
        f"{flag}: rollout {w['rollout_id']} {w['phase']} at {w['stage']}"
        for flag, w in flags.items()
    )
    what = (
        "none of the controller's data at start (its store identity was gone)"
        if identity_lost
        else "its identity at start but not the set of the controller's flags, nor the"
        " states of some (on a cluster: one master's data)"
    )
    summary = (
        f"redis had {what}:"
        f" {len(flags)} flags are rebuilt at their last decision from the decisions and"
        f" flag-state topics ({each or 'none'})"
        + (f"; {len(refused)} cannot be: {', '.join(sorted(refused))}" if refused else "")
    )
    details: JsonObject = {"flags": dict(flags), "rebuilding": True, "not_rebuilt": dict(refused)}
    details["identity_lost"] = identity_lost
    return RaiseAlert("store_lost", "critical", summary, details)
