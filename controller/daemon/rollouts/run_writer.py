"""The one writer of release pipeline runs: load, decide, save with the outbox, publish, start.

Every change to a run goes through :meth:`RunWriter.apply`, as every change
to a rollout goes through the rollouts service: load the run, decide
(:func:`controller.core.release.step`), save the new state and the decisions
and alerts it implies in one compare-and-set with its outbox
(:mod:`controller.adapters.redis.pipeline_runs`), publish them, then start the
rollouts it asks for. A rollout a step starts has its id
(:func:`~controller.core.release.rollout_id_of`) and its start command's id
derived from the run and the environment, so the rollouts service applies it
once however often it is asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from controller.core.common import ControllerError, scoped
from controller.core.release import (
    Decision,
    Event,
    PipelineState,
    RolloutEnded,
    RunPhase,
    StartRollout,
    step,
)
from controller.core.rollouts import CommandInput, CommandRefused, RaiseAlert
from controller.core.wire import CommandAction, PipelineEvidence
from controller.core.wire import Decision as WireDecision
from controller.daemon.outputs import render_alert
from controller.daemon.rollouts.rollouts import Rollouts, start_refusal
from controller.ports import OutboxMessage, Outputs, PipelineRuns, RolloutStates
from controller.settings import TopicSettings

MAX_CONFLICTS = 10
OUTCOMES = {"waiting": "held"}
"""A pipeline decision's outcome on the decisions topic: a gate that waits is ``held``."""


class RunWriter:
    """Applies events to runs, saves them with their outbox, publishes, starts rollouts."""

    def __init__(
        self,
        *,
        runs: PipelineRuns,
        rollouts: Rollouts,
        states: RolloutStates,
        outputs: Outputs,
        topics: TopicSettings,
        default: Callable[[], str],
        clock: Callable[[], datetime],
    ) -> None:
        self.runs, self._rollouts, self._outputs, self._topics = runs, rollouts, outputs, topics
        self._states = states
        self._default, self._now = default, clock
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def key(self, flag: str, environment: str) -> str:
        """The flag's key in ``environment`` (the default environment's: the flag's own)."""
        return scoped(flag, environment, self._default())

    async def begin(self, run: PipelineState, actions: list[Any]) -> None:
        """Save a new run (once: a run already saved is left as it is) and act on it."""
        await self.runs.index(run.flag, run.run_id, int(run.started_at.timestamp() * 1000))
        refused: list[RolloutEnded] = []
        async with self._locks[run.run_id]:
            if await self.runs.save(run.run_id, 0, run, self._outbox(run, actions)):
                refused = await self._after(run, actions)
        for ended in refused:
            await self.apply(run.run_id, ended)

    async def apply(self, run_id: str, event: Event) -> None:
        """Decide ``event`` for the run, save the result with its outbox, publish, act; a
        rollout whose start was refused ends its step there (aborted, saying why)."""
        refused = await self._applied(run_id, event)
        for ended in refused:
            await self.apply(run_id, ended)

    async def _applied(self, run_id: str, event: Event) -> list[RolloutEnded]:
        async with self._locks[run_id]:
            for _ in range(MAX_CONFLICTS):
                loaded = await self.runs.load(run_id)
                if loaded.run is None:
                    return []
                new, actions = step(loaded.run, event)
                if not actions and new == loaded.run:
                    return []
                if await self.runs.save(run_id, loaded.rev, new, self._outbox(new, actions)):
                    return await self._after(new, actions)
        raise ControllerError(f"pipeline run {run_id}: {MAX_CONFLICTS} conflicts in a row")

    async def _after(self, run: PipelineState, actions: list[Any]) -> list[RolloutEnded]:
        """Publish what was saved, then start the rollouts asked for; the ends of those whose
        start was refused."""
        await self.drain(run.run_id)
        refused = []
        for action in actions:
            if isinstance(action, StartRollout):
                broken = await self.start_rollout(run, action)
                if broken is not None:
                    why = f"its rollout did not start: {broken}"
                    ended = RolloutEnded(
                        action.environment, action.rollout_id, "aborted", self._now(), why
                    )
                    refused.append(ended)
        if run.phase is not RunPhase.RUNNING:
            await self.runs.finished(run.run_id)
        return refused

    async def start_rollout(self, run: PipelineState, action: StartRollout) -> str | None:
        """Start the step's rollout, once: its command id is the run's and the environment's.

        A start that would break its environment's prerequisites or holdouts as they stand now
        is refused, as the same start signed by a person is (a rejected decision): returns
        why, else None."""
        key = self.key(run.flag, action.environment)
        command = CommandInput(
            action=CommandAction.START,
            flag=key,
            command_id=digest(f"{run.run_id}/{action.environment}/start"),
            actor=f"pipeline {run.pipeline.name}",
            now=self._now(),
            reason=f"pipeline {run.pipeline.name} (run {run.run_id[:32]})",
            plan=action.plan,
            new_rollout_id=action.rollout_id,
            new_salt=secrets.token_hex(8),
        )
        broken = await start_refusal(self._states, key, action.plan)
        if broken is not None:
            refused = CommandRefused(
                action=command.action,
                flag=key,
                command_id=command.command_id,
                actor=command.actor,
                key_id=command.key_id,
                reason=broken,
                now=command.now,
            )
            await self._rollouts.apply(key, refused)
            return broken
        await self._rollouts.apply(key, command)
        return None

    async def drain(self, run_id: str) -> None:
        """Publish what the run's outbox holds, and drop what the broker acknowledged."""
        pending = [m for m in await self.runs.pending(run_id) if m.readable]
        if pending:
            await self._outputs.publish([(m.topic, m.key, m.value) for m in pending])
            await self.runs.published(run_id, [m.id for m in pending])

    async def refuse(
        self, flag: str, command_id: str, reason: str, evidence: PipelineEvidence
    ) -> None:
        """Publish the refusal of a pipeline's start, which changes no run."""
        refused = Decision(
            key=f"{command_id}/refused",
            kind="pipeline_start",
            outcome="rejected",
            reason=reason[:500],
            command_id=command_id,
            evidence=evidence,
        )
        messages = self.messages(flag, "", "", [refused])
        await self._outputs.publish([(m.topic, m.key, m.value) for m in messages])

    def _outbox(self, run: PipelineState, actions: list[Any]) -> list[OutboxMessage]:
        return self.messages(run.flag, run.run_id, run.pipeline.name, actions)

    def messages(
        self, flag: str, run_id: str, pipeline: str, actions: list[Any]
    ) -> list[OutboxMessage]:
        now, out = self._now(), []
        for action in actions:
            if isinstance(action, RaiseAlert):
                out.append(render_alert(flag, action, now, self._topics))
            elif isinstance(action, Decision):
                value = _decision(flag, run_id, pipeline, action, now)
                out.append(OutboxMessage(self._topics.decisions, flag, value))
        return out


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _command_id(action: Decision) -> str | None:
    """The command a decision answers: a run's first start answers the pipeline command."""
    return action.evidence.command_id if action.kind == "pipeline_start" else None


def _decision(flag: str, run_id: str, pipeline: str, action: Decision, now: datetime) -> bytes:
    """A pipeline decision on the decisions topic: its id is its key's, the same on a replay."""
    evidence = action.evidence.merged(
        run_id=run_id or None,
        pipeline=pipeline or None,
        environment=action.environment,
        key=action.key,
    )
    decided = WireDecision.model_validate(
        {
            "type": "decision",
            "v": 1,
            "id": digest(action.key),
            "ts": now.isoformat(),
            "flag": flag,
            "rollout_id": evidence.rollout_id,
            "kind": "pipeline",
            "action": action.kind,
            "outcome": OUTCOMES.get(action.outcome, action.outcome),
            "reason": action.reason[:500],
            "command_id": action.command_id or _command_id(action),
            "evidence": evidence,
        }
    )
    return decided.model_dump_json().encode()
