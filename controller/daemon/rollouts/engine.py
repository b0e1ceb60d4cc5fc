"""The rollout engine: the command intake and the gate loop, over the one writer of rollouts.

:class:`~controller.daemon.rollouts.rollouts.Rollouts` is the only code that changes a
rollout (load → ``machine.step`` → save with its outbox → publish), for every
input, refusals included. Two thin loops feed it:
:class:`~controller.daemon.rollouts.commands.CommandIntake` (commands and monitor
alerts, authenticated by :mod:`controller.core.machine.commands`) and
:class:`~controller.daemon.rollouts.gates.GateLoop` (verdicts and timers; the advisor
is asked off the loop by :mod:`~controller.daemon.rollouts.consulting`).
:mod:`~controller.daemon.rollouts.containment` confines what fails for good to the one
input that caused it.

:func:`build_engine` makes the parts from the settings and the ports, and
hands each the ones it uses; :class:`Engine` runs the two loops together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog

from controller.adapters.redis import AppKeyStore, GapStore
from controller.core.rollouts import Window
from controller.daemon.metrics import Metrics
from controller.daemon.outputs import Outbox
from controller.daemon.registries import AppKeyCommands, Keyring, SegmentService, registry_of
from controller.daemon.rollouts.commands import CommandIntake
from controller.daemon.rollouts.completeness import EvidenceWatch
from controller.daemon.rollouts.consulting import Consultations
from controller.daemon.rollouts.containment import Containment
from controller.daemon.rollouts.gates import GateLoop
from controller.daemon.rollouts.history import Recorder
from controller.daemon.rollouts.ingest_commands import IngestCommands
from controller.daemon.rollouts.pipelines import Pipelines, PlatformEnvironments
from controller.daemon.rollouts.republishing import StateRepublisher
from controller.daemon.rollouts.rollouts import Rollouts
from controller.daemon.rollouts.sources import SourceReadings
from controller.kit.backoff import DEFAULT_RETRY
from controller.ports import (
    Advisor,
    AggregateReader,
    ControlSource,
    DeadLetters,
    Outputs,
    PipelineRuns,
    RolloutStates,
)
from controller.process import Retry
from controller.settings import EngineSettings, LlmSettings, TopicSettings
from controller.settings.retry import RetrySettings

log = structlog.get_logger("controller.daemon.rollouts.engine")
T = TypeVar("T")
Clock = Callable[[], datetime]


class Engine:
    """Runs the command intake and the gate loop, after republishing what a crash left."""

    def __init__(
        self,
        *,
        rollouts: Rollouts,
        commands: CommandIntake,
        gates: GateLoop,
        consultations: Consultations,
        contained: Containment,
        states: RolloutStates,
        keys: Keyring,
        stopping: asyncio.Event,
        republisher: StateRepublisher,
        pipelines: Pipelines | None = None,
    ) -> None:
        self.rollouts, self.commands, self.gates = rollouts, commands, gates
        self.pipelines = pipelines  # release pipelines, where a store keeps their runs
        self.republisher = republisher
        """Publishes every flag's state again: at start, and when topics were created again."""
        keys.revoked = self.keys_revoked  # a SIGHUP that removes keys takes their approvals
        self.keys = keys
        """The operator keys commands are verified with; reloaded on SIGHUP (keyring.py)."""
        self._consultations, self._contained, self._states = consultations, contained, states
        self._stopping = stopping

    @property
    def last_gate_pass(self) -> float:
        """When the gate loop last completed a pass (monotonic clock), for readiness."""
        return self.gates.last_pass

    @property
    def last_control_pass(self) -> float:
        """When the command intake last completed a pass (monotonic clock), for readiness."""
        return self.commands.last_pass

    def stop(self) -> None:
        self._stopping.set()

    def watch_evidence(self, watch: EvidenceWatch) -> None:
        """Gate on what ingest counted: an advance waits for held or lagging partitions."""
        self.gates.evidence = self._consultations.evidence = watch

    def sweep_soon(self) -> None:
        """Gate every owned flag at the next pass: commands partitions were just assigned."""
        self.gates.sweep_soon()

    async def run(self, *, control: ControlSource) -> None:
        """Republish what a crash left in outboxes, then serve commands and gates while
        every flag's state is published again beside them (a kill never waits for it;
        a stop asked before the outboxes were drained skips it: the next start does it)."""
        for flag in await self._states.flags():
            await self._contained.run(self.rollouts.drain(flag), where="drain", flag=flag)
        try:
            async with asyncio.TaskGroup() as tasks:
                # A stop asked during those drains (one waited on a peer's lease) gets no
                # start-up work: the republish would only add messages the stop defers.
                if not self._stopping.is_set():
                    states = self.republisher.republish_all("start")
                    tasks.create_task(states, name="engine-republish")
                tasks.create_task(self.commands.run(control), name="engine-control")
                tasks.create_task(self.gates.run(control), name="engine-gates")
                if self.pipelines is not None:
                    tasks.create_task(self.pipelines.run(control), name="engine-pipelines")
        finally:
            await self._consultations.cancel()

    async def keys_revoked(self, key_ids: tuple[str, ...]) -> None:
        """Keys left the registry: their approvals still pending count no more, in every
        rollout (:mod:`controller.core.machine.approving`) and every pipeline run."""
        await self.rollouts.keys_revoked(key_ids, self._contained)
        if self.pipelines is not None:
            await self._contained.run(self.pipelines.keys_revoked(key_ids), where="revoke")

    async def consultations_done(self) -> None:
        """Wait until every consultation under way has been applied or dropped."""
        await self._consultations.done()


def build_engine(
    *,
    settings: EngineSettings,
    topics: TopicSettings,
    states: RolloutStates,
    aggregates: AggregateReader,
    outputs: Outputs,
    dead_letters: DeadLetters,
    llm: LlmSettings | None = None,
    advisor: Advisor | None = None,
    metrics: Metrics | None = None,
    history: Recorder | None = None,
    clock: Clock = lambda: datetime.now(UTC),
    backends: frozenset[str] = frozenset(),
    retry_policy: RetrySettings = DEFAULT_RETRY,
    segments: SegmentService | None = None,
    app_key_store: AppKeyStore | None = None,
    held_partitions: Mapping[str, GapStore] | None = None,
    team_windows: tuple[Window, ...] = (),
    pipeline_runs: PipelineRuns | None = None,
    sources: SourceReadings | None = None,
    unleash_envs: PlatformEnvironments | None = None,
) -> Engine:
    """The engine's parts, each given what it uses: ``backends``, the flag platforms a plan
    may name (``unleash_envs`` reads Unleash's); ``team_windows``, the windows of plans naming
    none; ``sources``, guardrail readings from a metric source. Without ``metrics`` or
    ``history``: fresh metrics, no history."""
    stopping = asyncio.Event()
    retry = Retry(stopping, retry_policy)
    metrics = metrics or Metrics()
    shared = _Shared(
        settings, topics, states, outputs, dead_letters, metrics, clock, stopping, retry
    )
    history = history or Recorder.disabled(topics)
    rollouts = _rollouts(shared, history, team_windows)
    contained = _containment(shared)
    consultations = _consultations(shared, advisor, llm, aggregates, rollouts, sources=sources)
    keys = Keyring(registry_of(settings))
    pipelines = _pipelines(
        shared, pipeline_runs, rollouts, keys, contained, backends=backends, unleash=unleash_envs
    )
    signed = _signed_commands(
        shared, keys, segments, app_key_store, held_partitions, pipelines=pipelines
    )
    commands = _command_intake(shared, rollouts, contained, keys, backends=backends, signed=signed)
    gates = _gate_loop(
        shared, rollouts, contained, consultations, history, aggregates=aggregates, sources=sources
    )
    return Engine(
        rollouts=rollouts,
        commands=commands,
        gates=gates,
        consultations=consultations,
        contained=contained,
        states=states,
        keys=keys,
        stopping=stopping,
        republisher=StateRepublisher(rollouts=rollouts, states=states, retry=retry),
        pipelines=pipelines,
    )


@dataclass(frozen=True, slots=True)
class _Shared:
    """What most of the engine's parts are given: its settings, its ports, its clock and
    the event that stops them all."""

    settings: EngineSettings
    topics: TopicSettings
    states: RolloutStates
    outputs: Outputs
    dead_letters: DeadLetters
    metrics: Metrics
    clock: Clock
    stopping: asyncio.Event
    retry: Retry
    """Retries what may pass (a broker or store error), until ``stopping`` is set."""


@dataclass(frozen=True, slots=True)
class _SignedCommands:
    """Who applies the signed commands that are not about one rollout, where configured."""

    segments: SegmentService | None
    app_keys: AppKeyCommands | None
    ingest: IngestCommands | None
    pipelines: Pipelines | None = None


def _rollouts(shared: _Shared, history: Recorder, team_windows: tuple[Window, ...]) -> Rollouts:
    """The one writer of rollouts, publishing through its outbox."""
    outbox = Outbox(
        states=shared.states,
        outputs=shared.outputs,
        topics=shared.topics,
        metrics=shared.metrics,
        clock=shared.clock,
        stopping=shared.stopping,
    )
    return Rollouts(
        states=shared.states,
        outbox=outbox,
        metrics=shared.metrics,
        history=history,
        topics=shared.topics,
        keep_command_ids=timedelta(seconds=shared.settings.command_max_age_seconds * 2),
        stale_after=timedelta(days=shared.settings.stale_after_days),
        clock=shared.clock,
        team_windows=team_windows,
    )


def _containment(shared: _Shared) -> Containment:
    return Containment(
        metrics=shared.metrics,
        outputs=shared.outputs,
        dead_letters=shared.dead_letters,
        topics=shared.topics,
        clock=shared.clock,
        retry=shared.retry,
    )


def _consultations(
    shared: _Shared,
    advisor: Advisor | None,
    llm: LlmSettings | None,
    aggregates: AggregateReader,
    rollouts: Rollouts,
    *,
    sources: SourceReadings | None,
) -> Consultations:
    """The advisor's consultations, off the gate loop; their advice applied to ``rollouts``,
    with the guardrails ``sources`` read."""
    consultations = Consultations(
        advisor=advisor,
        llm=llm or LlmSettings(),
        metrics=shared.metrics,
        states=shared.states,
        aggregates=aggregates,
        apply=rollouts.apply,
        clock=shared.clock,
    )
    consultations.sources = sources
    return consultations


def _signed_commands(
    shared: _Shared,
    keys: Keyring,
    segments: SegmentService | None,
    app_keys: AppKeyStore | None,
    held_partitions: Mapping[str, GapStore] | None,
    *,
    pipelines: Pipelines | None = None,
) -> _SignedCommands:
    """The segment service as given, and the app keys' and held partitions' commands where
    their stores are given."""
    return _SignedCommands(
        segments=segments,
        app_keys=None if app_keys is None else _app_key_commands(shared, app_keys, keys),
        ingest=None if held_partitions is None else _ingest_commands(shared, held_partitions, keys),
        pipelines=pipelines,
    )


def _pipelines(
    shared: _Shared,
    runs: PipelineRuns | None,
    rollouts: Rollouts,
    keys: Keyring,
    contained: Containment,
    *,
    backends: frozenset[str],
    unleash: PlatformEnvironments | None,
) -> Pipelines | None:
    """Release pipelines, where a store keeps their runs."""
    if runs is None:
        return None
    return Pipelines(runs, rollouts, keys, shared, contained, backends=backends, unleash=unleash)


def _app_key_commands(shared: _Shared, store: AppKeyStore, keys: Keyring) -> AppKeyCommands:
    return AppKeyCommands(
        store=store,
        outputs=shared.outputs,
        keys=keys,
        decisions_topic=shared.topics.decisions,
        max_age_seconds=shared.settings.command_max_age_seconds,
        clock=shared.clock,
    )


def _ingest_commands(
    shared: _Shared, stores: Mapping[str, GapStore], keys: Keyring
) -> IngestCommands:
    return IngestCommands(
        stores=stores,
        events_topic=shared.topics.events,
        outputs=shared.outputs,
        keys=keys,
        decisions_topic=shared.topics.decisions,
        max_age_seconds=shared.settings.command_max_age_seconds,
        clock=shared.clock,
    )


def _command_intake(
    shared: _Shared,
    rollouts: Rollouts,
    contained: Containment,
    keys: Keyring,
    *,
    backends: frozenset[str],
    signed: _SignedCommands,
) -> CommandIntake:
    return CommandIntake(
        rollouts=rollouts,
        states=shared.states,
        keys=keys,
        dead_letters=shared.dead_letters,
        contained=contained,
        retry=shared.retry,
        stopping=shared.stopping,
        settings=shared.settings,
        topics=shared.topics,
        backends=backends,
        clock=shared.clock,
        segments=signed.segments,
        app_keys=signed.app_keys,
        ingest=signed.ingest,
        pipelines=signed.pipelines,
    )


def _gate_loop(
    shared: _Shared,
    rollouts: Rollouts,
    contained: Containment,
    consultations: Consultations,
    history: Recorder,
    *,
    aggregates: AggregateReader,
    sources: SourceReadings | None,
) -> GateLoop:
    return GateLoop(
        rollouts=rollouts,
        states=shared.states,
        aggregates=aggregates,
        consultations=consultations,
        metrics=shared.metrics,
        history=history,
        contained=contained,
        retry=shared.retry,
        stopping=shared.stopping,
        settings=shared.settings,
        clock=shared.clock,
        sources=sources,
    )
