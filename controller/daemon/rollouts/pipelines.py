"""Release pipelines on the controller's own flag states: the one writer of pipeline runs.

Every change to a run goes through the one writer of runs
(:mod:`~controller.daemon.rollouts.run_writer`). What a run hears:

* a ``pipeline`` command starts a run (:meth:`start`), after the signature,
  the pipeline (environments, roles, every environment's plan, and each step
  served by Unleash against the environments Unleash has), the key's right to
  start in every environment, and the flag being free everywhere are checked;
  a refusal is a rejected decision with the reason. A pipeline with a step on
  Unleash is refused while Unleash does not say which environments it has:
  it never starts blind;
* an ``approve`` naming an environment whose step the flag's newest run has
  not started is that step's approval (:meth:`approval`);
* the loop (:meth:`run`) reconciles each running run every sweep: a step's
  rollout that ended is fed to the run as :class:`~controller.core.release.RolloutEnded`,
  then the clock as :class:`~controller.core.release.TimePassed` (a soak or
  a window), and a step whose rollout the run asked for but that never
  started (the controller stopped between saving the run and starting it)
  is started now.

Exactly once: a run's state only moves forward and each decision has a key
made of the run and what was decided; a rollout a step starts has its id
(:func:`~controller.core.release.rollout_id_of`) and its start command's id
derived from the run, so the rollouts service applies it once. A restart
therefore replays what it finds onto the stored state, and decides nothing
again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import Protocol

import structlog

from controller.core.common import ConfigError, ControllerError
from controller.core.machine import commands, pipeline_refusal, taken
from controller.core.reading import PipelineRun, pipeline_view
from controller.core.release import (
    Approval,
    Approve,
    KeyRevoked,
    LateRegression,
    Permission,
    Pipeline,
    PipelineCommand,
    PipelineState,
    RolloutEnded,
    RunPhase,
    StartRollout,
    StepState,
    StepStatus,
    TimePassed,
    begin,
    may,
    parse_pipeline,
    unleash_problems,
)
from controller.core.rollouts import Phase
from controller.core.wire import Command, JsonObject, PipelineEvidence, RolloutEnding
from controller.daemon.registries import Keyring
from controller.daemon.rollouts.containment import Containment, Retry
from controller.daemon.rollouts.rollouts import Rollouts, start_refusal
from controller.daemon.rollouts.run_writer import RunWriter
from controller.kit.backoff import sleep_or_stop
from controller.kit.deadlines import deadline
from controller.ports import ControlSource, Outputs, PipelineRuns, RolloutStates
from controller.settings import EngineSettings, TopicSettings

log = structlog.get_logger("controller.daemon.rollouts.pipelines")

PlatformEnvironments = Callable[[], Awaitable[frozenset[str]]]
"""The environments Unleash has (its admin API, read when a pipeline needs them)."""

ENDED = {
    Phase.COMPLETED: "completed",
    Phase.ROLLED_BACK: "rolled_back",
    Phase.ABORTED: "aborted",
    Phase.KILLED: "killed",
}
ENVIRONMENTS_WAIT_SECONDS = 2.0
"""The longest a pipeline command waits for Unleash's environments. Commands are decided one
after another, so a kill sent behind it waits no longer; a refusal says to send it again."""


class EngineParts(Protocol):
    """What the engine shares with its parts: its settings, its ports, its clock, its stop
    event and its retries."""

    @property
    def settings(self) -> EngineSettings: ...
    @property
    def topics(self) -> TopicSettings: ...
    @property
    def states(self) -> RolloutStates: ...
    @property
    def outputs(self) -> Outputs: ...
    @property
    def clock(self) -> Callable[[], datetime]: ...
    @property
    def stopping(self) -> asyncio.Event: ...
    @property
    def retry(self) -> Retry: ...


class Pipelines:
    """Starts, approves and reconciles release pipeline runs."""

    def __init__(
        self,
        runs: PipelineRuns,
        rollouts: Rollouts,
        keys: Keyring,
        parts: EngineParts,
        contained: Containment,
        *,
        backends: frozenset[str] = frozenset(),
        unleash: PlatformEnvironments | None = None,
    ) -> None:
        self._runs, self._states, self._keys = runs, parts.states, keys
        self._now, self._backends, self._parts = parts.clock, backends, parts
        self._unleash = unleash
        self._contained = contained
        self._writer = RunWriter(
            runs=runs,
            rollouts=rollouts,
            states=parts.states,
            outputs=parts.outputs,
            topics=parts.topics,
            default=lambda: keys.environments.default,
            clock=parts.clock,
        )

    # -- commands -----------------------------------------------------------------------

    async def start(self, command: PipelineCommand, raw: JsonObject) -> None:
        """Start ``command``'s pipeline for its flag, or publish why not."""
        now = self._now()
        if (await self._runs.load(command.id)).run is not None:
            return  # read again: the run it started goes on
        checked = await self._checked(command, raw, now)
        if isinstance(checked, str):
            log.warning("pipeline_rejected", flag=command.flag, id=command.id, reason=checked)
            who = PipelineEvidence(actor=command.actor, key_id=command.key_id)
            await self._writer.refuse(command.flag, command.id, checked, who)
            return
        run, actions = begin(
            checked,
            run_id=command.id,
            flag=command.flag,
            now=now,
            actor=command.actor,
            command_id=command.id,
            applied=command.applied,
        )
        await self._writer.begin(run, actions)

    async def _checked(
        self, command: PipelineCommand, raw: JsonObject, now: datetime
    ) -> Pipeline | str:
        """The command's pipeline, or why it may not start."""
        unsigned = commands.signature_refusal(
            raw,
            ts=command.ts,
            keys=self._keys,
            now=now,
            max_age_seconds=self._parts.settings.command_max_age_seconds,
        )
        if unsigned is not None:
            return unsigned
        try:
            pipeline = parse_pipeline(
                command.pipeline,
                environments=self._keys.environments,
                roles=self._keys.book,
            )
        except ConfigError as exc:
            return str(exc)
        return (
            pipeline_refusal(pipeline, now, self._backends)
            or await _unleash_refusal(pipeline, self._unleash)
            or await self._busy(command, pipeline)
            or await _graph_refusal(self._states, self._writer.key, command.flag, pipeline)
            or pipeline
        )

    async def _busy(self, command: PipelineCommand, pipeline: Pipeline) -> str | None:
        """Why the key may not start this pipeline, or the flag is taken somewhere."""
        roles = self._keys.roles_of(command.key_id or "")
        for environment in pipeline.environments:
            verdict = may(roles, Permission.START, environment)
            if not verdict:
                return f"a pipeline starts rollouts in {environment}: {verdict.reason}"
        for run_id in (await self._runs.runs_of(command.flag))[:1]:
            run = (await self._runs.load(run_id)).run
            if run is not None and run.phase is RunPhase.RUNNING:
                return f"{command.flag} already has a pipeline running (run {run_id})"
        for environment in pipeline.environments:
            key = self._writer.key(command.flag, environment)
            if busy := taken(key, (await self._states.load(key)).rollout):
                return busy
        return None

    async def approval(self, command: Command, roles: tuple[str, ...]) -> bool:
        """Decide ``command`` (an authenticated ``approve``) if it is for a step of the flag's
        newest run that has not started or is over; False: it is a rollout stage's."""
        environment = self._keys.environments.of(command.environment)
        runs = await self._runs.runs_of(command.flag)
        run = (await self._runs.load(runs[0])).run if runs else None
        found = None if run is None else run.step_of(environment)
        if run is None or found is None or found[1].status is StepStatus.RUNNING:
            return False
        gate = run.pipeline.steps[found[0]].approval
        needed = [role for role in (gate.roles if gate else ()) if role in roles]
        role, now = (needed or [*roles, "operator"])[0], self._now()
        approval = _approval(command, environment, role, now, self._keys)
        await self._writer.apply(run.run_id, Approve(approval, now))
        return True

    async def keys_revoked(self, key_ids: tuple[str, ...]) -> None:
        """Keys left the registry: their approvals of steps not started count no more."""
        for run_id in await self._runs.running():
            for key_id in key_ids:
                await self._writer.apply(run_id, KeyRevoked(key_id, self._now()))

    # -- reconciling ----------------------------------------------------------------------

    async def run(self, control: ControlSource) -> None:
        """Reconcile each running run of a flag this instance owns, every sweep (retried)."""
        every, retry = self._parts.settings.sweep_interval_seconds, self._parts.retry
        while not await sleep_or_stop(every, self._parts.stopping):
            passed = retry(lambda: self.run_pass(control), "pipelines")
            await self._contained.run(passed, where="pipeline pass")

    async def run_pass(self, control: ControlSource) -> None:
        for run_id in sorted(await self._runs.running()):
            run = (await self._runs.load(run_id)).run
            if run is not None and control.owns(run.flag):
                reconciled = self._parts.retry(lambda r=run_id: self.reconcile(r), "pipeline")  # type: ignore[misc]
                await self._contained.run(reconciled, where="pipeline", flag=run.flag)

    async def reconcile(self, run_id: str) -> None:
        """Publish what the run's outbox holds, feed it its rollouts' endings and the clock."""
        await self._writer.drain(run_id)
        run = (await self._runs.load(run_id)).run
        if run is None:
            return
        if run.phase is not RunPhase.RUNNING:
            await self._runs.finished(run_id)
            return
        for current in run.steps:
            if current.status is StepStatus.RUNNING:
                ended = await self._ending(run, current)
                if ended is not None:
                    await self._writer.apply(run_id, ended)
            elif current.status is StepStatus.COMPLETED and run.held is None:
                late = await _late(self._states, self._writer.key, run, current, self._now)
                if late is not None:
                    await self._writer.apply(run_id, late)
        await self._writer.apply(run_id, TimePassed(self._now()))

    async def _ending(self, run: PipelineState, current: StepState) -> RolloutEnded | None:
        """How the step's rollout ended, or None while it runs; started first if it never was."""
        env, rollout_id = current.environment, current.rollout_id or ""
        key, refused = self._writer.key(run.flag, env), None
        rollout = (await self._states.load(key)).rollout
        if rollout is None or rollout.rollout_id != current.rollout_id:
            start = StartRollout(env, rollout_id, run.pipeline.plan_for(env), "")
            refused = await self._writer.start_rollout(run, start)
            rollout = (await self._states.load(key)).rollout
        if rollout is None or rollout.rollout_id != current.rollout_id:
            held = "none" if rollout is None else f"{rollout.rollout_id} ({rollout.phase.value})"
            why = f"its rollout did not start: {refused or f'{key} holds {held}'}"
            return RolloutEnded(env, rollout_id, "aborted", self._now(), why)
        outcome = ENDED.get(rollout.phase)
        if outcome is None:
            return None
        ending = rollout.ended
        return RolloutEnded(
            current.environment,
            rollout.rollout_id,
            outcome,  # type: ignore[arg-type]
            self._now(),
            reason=ending.reason if ending is not None else "",
            evidence=RolloutEnding(decided=ending.action, by=ending.kind)
            if ending is not None
            else RolloutEnding(),
        )

    async def status(self, flag: str) -> PipelineRun | None:
        """The flag's newest run as ``pipeline status`` shows it, or None when it has none."""
        runs = await self._runs.runs_of(flag)
        run = (await self._runs.load(runs[0])).run if runs else None
        if run is None:
            return None
        keys = {s.environment: self._writer.key(flag, s.environment) for s in run.steps}
        found = {env: (await self._states.load(key)).rollout for env, key in keys.items()}
        return pipeline_view(run, found, self._now(), keys)

    async def with_runs(self, flags: Collection[str]) -> set[str]:
        """Which of ``flags`` have a pipeline run (the console links to their pipeline)."""
        return await self._runs.with_runs(flags)


async def _graph_refusal(
    states: RolloutStates, key_of: Callable[[str, str], str], flag: str, pipeline: Pipeline
) -> str | None:
    """Why a step's plan would break its environment's prerequisites or holdouts as they
    stand (each step is checked again when it starts), or None."""
    for environment in pipeline.environments:
        key = key_of(flag, environment)
        broken = await start_refusal(states, key, pipeline.plan_for(environment))
        if broken is not None:
            return f"{environment}: {broken}"
    return None


async def _late(
    states: RolloutStates,
    key_of: Callable[[str, str], str],
    run: PipelineState,
    current: StepState,
    clock: Callable[[], datetime],
) -> LateRegression | None:
    """The completed step's late regression, when its rollout found one."""
    rollout = (await states.load(key_of(run.flag, current.environment))).rollout
    if rollout is None or rollout.rollout_id != current.rollout_id:
        return None
    if rollout.late_regression is None:
        return None
    why = rollout.late_regression
    return LateRegression(current.environment, rollout.rollout_id, why, clock())


def _approval(
    command: Command, environment: str, role: str, now: datetime, keys: Keyring
) -> Approval:
    """The approval ``command`` gives ``environment``'s step under ``role``, counting for the
    person holding its key."""
    key_id = command.key_id or ""
    return Approval(
        step=environment,
        key_id=key_id,
        operator=command.actor,
        role=role,
        command_id=command.id,
        at=now,
        holder=keys.holder_of(key_id),
    )


async def _unleash_refusal(pipeline: Pipeline, unleash: PlatformEnvironments | None) -> str | None:
    """Why a step served by Unleash cannot run there: Unleash lacks its environment, or did
    not say which environments it has (a pipeline never starts blind)."""
    served = any(pipeline.plan_for(e).unleash for e in pipeline.environments)
    if unleash is None or not served:
        return None  # no Unleash at all: the plan's refusal says so
    try:
        async with deadline(ENVIRONMENTS_WAIT_SECONDS, "Unleash's environments"):
            have = await unleash()
    except ControllerError as exc:
        return (
            f"Unleash's environments could not be read ({str(exc)[:300]}): a pipeline with"
            " steps on Unleash starts only once Unleash says which it has; send it again"
        )
    problems = unleash_problems(pipeline, have)
    return f"invalid pipeline: {'; '.join(problems)}" if problems else None
