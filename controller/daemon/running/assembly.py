"""The daemon's parts over Redis and the brokers, built in order, and what runs them.

:func:`~controller.daemon.running.wiring.run` reaches Redis and the brokers; the steps
here build on them, each from the :class:`Run` every step reads: the rollouts'
stores and outputs (:func:`rollout_side`), the engine (:func:`engine_of`), the
HTTP API (:func:`.http_side.serve_http`) and the services that run until the daemon stops
(:func:`services_of`). Every part a step starts is entered on the run's exit
stack, so it closes in reverse order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from controller.adapters.kafka import Publisher, TopicVersionFloors
from controller.adapters.llm import Advisor
from controller.adapters.prometheus import PrometheusSource
from controller.adapters.redis import (
    AppKeyStore,
    AppliedStore,
    GapStore,
    PipelineRunStore,
    RedisAggregateStore,
    RedisClient,
    RedisGateHistory,
    RolloutStore,
    SegmentStore,
    StoreMarker,
)
from controller.adapters.unleash import UnleashAdmin
from controller.core.rollouts import Window
from controller.core.trust import StateSigner
from controller.daemon.backends import BackendSync, NudgingOutputs
from controller.daemon.ingest import Ingest
from controller.daemon.metrics import Metrics
from controller.daemon.outputs import Alarms, Publishing, SigningOutputs
from controller.daemon.registries import (
    KeyReloader,
    SegmentService,
)
from controller.daemon.rollouts import (
    Clock,
    Engine,
    Recorder,
    SourceReadings,
    broker_log_ends,
    build_engine,
    evidence_watch,
)
from controller.daemon.running.closing import Closing
from controller.daemon.running.connecting import KafkaClients
from controller.daemon.running.rebuilding import Rebuilder, topic_history
from controller.daemon.running.store_keeper import StoreKeeper
from controller.daemon.running.supervisor import Service
from controller.daemon.running.topics import TopicKeeper
from controller.daemon.serving import (
    BrokerWatch,
    StartUp,
    StoreLoss,
)
from controller.ports import Outputs
from controller.settings import Settings

_Part = TypeVar("_Part")


@dataclass(frozen=True, slots=True)
class Time:
    """What says when a rollout may move: the clock, and the team's release windows."""

    clock: Clock
    team_windows: tuple[Window, ...]


@dataclass(frozen=True, slots=True)
class Run:
    """What every step of the start reads: the settings, the stop, the parts all share."""

    settings: Settings
    stop: asyncio.Event
    closing: Closing
    stack: AsyncExitStack
    """Every part entered; closed in reverse order, within the grace, when the daemon stops."""
    when: Time
    reread: Callable[[], Settings]
    signer: StateSigner | None
    metrics: Metrics
    alarms: Alarms
    startup: StartUp

    async def enter(self, name: str, part: AbstractAsyncContextManager[_Part]) -> _Part:
        """Start ``part`` now; it is closed when the daemon stops."""
        return await self.closing.enter(self.stack, name, part)


@dataclass(frozen=True, slots=True)
class RedisSide:
    """Redis, answering: its client, the aggregates, and the ingest loop that writes them."""

    client: RedisClient
    store: RedisAggregateStore
    ingest: Ingest
    held: dict[str, GapStore]  # by topic: where ingest holds partitions whose log lost data


@dataclass(frozen=True, slots=True)
class RolloutSide:
    """Where rollouts are kept, recorded and published, and what else serves them."""

    states: RolloutStore
    gate_history: RedisGateHistory
    recorder: Recorder
    outputs: Outputs
    """The engine's outputs: signed where a signing key is set, nudging the Unleash sync."""
    advisor: Advisor | None
    sync: BackendSync | None
    segments: SegmentService
    sources: SourceReadings
    """Guardrails read from Prometheus, each flag's off the gate loop."""
    loss: StoreLoss = field(default_factory=StoreLoss)
    """The flags the store lost, served from their last state until they are back."""


@dataclass(frozen=True, slots=True)
class Daemon:
    """Every long-lived part: what the HTTP API shows and the services run."""

    redis: RedisSide
    kafka: KafkaClients
    rollouts: RolloutSide
    engine: Engine
    brokers: BrokerWatch  # for /readyz: a hung broker raises no error
    side_ingests: dict[str, Ingest] = field(default_factory=dict)  # the Collector's, for /readyz


async def rollout_side(run: Run, client: RedisClient, kafka: KafkaClients) -> RolloutSide:
    """The rollouts' stores and outputs, the advisor, and the Unleash sync when enabled."""
    settings = run.settings
    advisor = await _advisor(run)
    states = RolloutStore(client, settings=settings.redis)
    gate_history = RedisGateHistory(client, settings=settings.redis, history=settings.history)
    recorder = Recorder(store=gate_history, settings=settings.history, topics=settings.topics)
    sync = await _backend_sync(run, client, states, kafka)
    signed = _signed_outputs(run, kafka.outputs)
    segments = await _segments(
        settings,
        SegmentStore(client, settings=settings.redis),
        signed,
        run.signer,
        run.metrics,
        changed=sync.segment_changed if sync is not None else None,
    )
    outputs = _engine_outputs(run, signed, sync)
    sources = await _sources(run)
    return RolloutSide(states, gate_history, recorder, outputs, advisor, sync, segments, sources)


async def _sources(run: Run) -> SourceReadings:
    """The readings of guardrails fed by Prometheus; without ``prometheus.url`` they hold."""
    settings = run.settings.prometheus
    source = None
    if settings.enabled:
        source = await run.enter("prometheus", PrometheusSource(settings))
    alarms, clock = run.alarms, run.when.clock
    alert = lambda flag, action: alarms(action, flag)  # noqa: E731
    readings = SourceReadings(source=source, settings=settings, clock=clock, alert=alert)
    return await run.enter("metric readings", readings)


async def _advisor(run: Run) -> Advisor | None:
    """The model advisor, unless ``llm.mode`` is off."""
    if run.settings.llm.mode == "off":
        return None
    advisor = await run.enter("advisor", Advisor(run.settings.llm))
    advisor.check_in_background()  # a model that does not answer is named at start
    return advisor


async def _backend_sync(
    run: Run, client: RedisClient, states: RolloutStore, kafka: KafkaClients
) -> BackendSync | None:
    """The Unleash sync, when rollouts are served from Unleash too."""
    settings = run.settings
    if not settings.unleash.enabled:
        return None
    return BackendSync(
        backend=await run.enter("unleash", UnleashAdmin(settings.unleash)),
        records=AppliedStore(client, settings=settings.redis),
        states=states,
        settings=settings.unleash,
        topics=settings.topics,
        outputs=kafka.outputs,
        owns=kafka.control.owns,
        metrics=run.metrics.backend,
        retry=settings.retry,
    )


def _signed_outputs(run: Run, published: Publisher) -> Publishing:
    """What every decision and flag state is published through, whoever publishes it (the
    engine, pipelines, segments, app keys): signed when a key is set."""
    if run.signer is None:
        return published
    topics = run.settings.topics  # apps that verify hold only states the controller signed
    return SigningOutputs(
        published,
        flag_state_topic=topics.flag_state,
        signer=run.signer,
        decisions_topic=topics.decisions,
    )


def _engine_outputs(run: Run, signed: Publishing, sync: BackendSync | None) -> Outputs:
    """What the engine publishes through: the signed outputs, nudging the sync."""
    topic = run.settings.topics.flag_state
    outputs: Outputs = signed
    if sync is not None:
        outputs = NudgingOutputs(outputs, flag_state_topic=topic, nudge=sync.nudge)
    return outputs


def engine_of(run: Run, redis: RedisSide, kafka: KafkaClients, rollouts: RolloutSide) -> Engine:
    """The rollout engine over the rollouts' side, its parts given what each uses."""
    settings = run.settings
    engine = build_engine(
        settings=settings.engine,
        llm=settings.llm,
        advisor=rollouts.advisor,
        metrics=run.metrics,
        topics=settings.topics,
        states=rollouts.states,
        aggregates=redis.store,
        outputs=rollouts.outputs,
        dead_letters=kafka.dead_letters,
        history=rollouts.recorder,
        backends=frozenset({"unleash"} if rollouts.sync is not None else set()),
        retry_policy=settings.retry,
        segments=rollouts.segments,
        app_key_store=AppKeyStore(redis.client, settings=settings.redis),
        held_partitions=redis.held,
        clock=run.when.clock,
        team_windows=run.when.team_windows,
        pipeline_runs=PipelineRunStore(redis.client, settings=settings.redis),
        sources=rollouts.sources,
        unleash_envs=rollouts.sync.environments if rollouts.sync is not None else None,
    )
    engine.rollouts.floors = TopicVersionFloors(
        settings.kafka,
        flag_state_topic=settings.topics.flag_state,
        decisions_topic=settings.topics.decisions,
    )
    ends = broker_log_ends(settings)
    watch = evidence_watch(redis.client, settings, run.when.clock, log_ends=ends, alarm=run.alarms)
    engine.watch_evidence(watch)
    # What {{environment}} becomes for a default-environment rollout (reloaded on SIGHUP)
    rollouts.sources.default_environment = lambda: engine.keys.environments.default
    return engine


def services_of(run: Run, daemon: Daemon) -> dict[str, Service]:
    """What runs until the daemon stops: ingest, the engine, the broker watch, the keepers,
    and the Unleash sync when there is one."""
    kafka, engine, brokers = daemon.kafka, daemon.engine, daemon.brokers
    ingest, store = daemon.redis.ingest, daemon.redis.store
    services: dict[str, Service] = {
        "ingest": (
            ingest.run(source=kafka.events, store=store, dead_letters=kafka.dead_letters),
            ingest.stop,
        ),
        "engine": (engine.run(control=kafka.control), engine.stop),
        "brokers": (brokers.run(), brokers.stop),
    }
    services |= _keepers(run, engine, kafka.outputs, daemon.rollouts.segments)
    services["store"] = _store_keeper(run, daemon)
    sync = daemon.rollouts.sync
    if sync is not None:
        sync.attach(engine.rollouts.apply, daemon.rollouts.segments.reads().held)
        services["backends"] = (sync.run(), sync.stop)
    return services


def _keepers(
    run: Run, engine: Engine, outputs: Publisher, segments: SegmentService
) -> dict[str, Service]:
    """The operator keys reloaded on SIGHUP, and, with ``kafka.create_topics``, topics a
    broker lost created again, with every flag state and segment published again."""
    settings, reread = run.settings, run.reread
    keys = KeyReloader(engine.keys, lambda: reread().engine, outputs, settings.topics)
    services: dict[str, Service] = {"keys": (keys.run(), keys.stop)}
    if settings.kafka.create_topics:

        async def recreated(_topics: list[str]) -> None:
            outputs.renew()  # the producer that knew the deleted topics would wait on them
            await engine.republisher.republish_all("topics created again")
            await segments.republish()

        keeper = TopicKeeper(
            kafka=settings.kafka, topics=settings.topics, alarm=run.alarms, recreated=recreated
        )
        services["topics"] = (keeper.run(), keeper.stop)
    return services


def _store_keeper(run: Run, daemon: Daemon) -> Service:
    """The keeper that tells a store that lost the controller's data, and the rebuilder of
    its flags (see :mod:`.store_keeper` and :mod:`.rebuilding`)."""
    floors, settings = daemon.engine.rollouts.floors, run.settings
    rebuilder = Rebuilder(
        rollouts=daemon.engine.rollouts,
        states=daemon.rollouts.states,
        read=topic_history(settings.kafka, settings.topics),
        owns=daemon.kafka.control.owns,
        loss=daemon.rollouts.loss,
        clock=run.when.clock,
    )
    keeper = StoreKeeper(
        marker=StoreMarker(daemon.redis.client, settings=settings.redis),
        states=daemon.rollouts.states,
        loss=daemon.rollouts.loss,
        alarm=run.alarms,
        forget_floors=floors.forget if floors is not None else lambda: None,
        rebuilder=rebuilder,
    )
    return keeper.run(), keeper.stop


async def _segments(
    settings: Settings,
    store: SegmentStore,
    outputs: Publishing,
    signer: StateSigner | None,
    metrics: Metrics,
    *,
    changed: Callable[[str], None] | None,
) -> SegmentService:
    """The segment service, once it published every segment again (which mends a crash
    between a save and its publish); ``changed`` is the Unleash sync's, when there is one."""
    segments = SegmentService(
        store=store,
        outputs=outputs,
        topics=settings.topics,
        signer=signer,
        max_age_seconds=settings.engine.command_max_age_seconds,
        clock=utcnow,
        counted=lambda action, outcome: metrics.decisions.labels(action, outcome).inc(),
        changed=changed or (lambda _name: None),
    )
    await segments.republish()
    return segments


def utcnow() -> datetime:
    return datetime.now(UTC)
