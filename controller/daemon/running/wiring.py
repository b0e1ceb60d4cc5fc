"""Wiring: build every part from the settings, run them under one supervisor.

Start order: the health listener (its ``/readyz`` names the dependency
start-up waits for) → Redis client → stores → topics → producers → consumers → the
ingest and engine tasks. Stop order is the reverse. SIGTERM or SIGINT asks ingest to
drain (stop fetching, flush the batch in hand, commit) within
``shutdown_grace_seconds``; past that the tasks are cancelled, which loses
nothing, because an unflushed batch is replayed from the stored offset.
Waiting for Redis and the brokers and starting the Kafka clients are in
:mod:`controller.daemon.running.connecting`, the drain in
:mod:`controller.daemon.running.supervisor`.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from controller.adapters.kafka import Producer, Publisher
from controller.adapters.llm import Advisor
from controller.adapters.redis import (
    AppKeyStore,
    AppliedStore,
    EventLedger,
    GapStore,
    IdWindow,
    RedisAggregateStore,
    RedisClient,
    RedisGateHistory,
    RolloutStore,
    SegmentStore,
    connect,
)
from controller.adapters.unleash import UnleashAdmin
from controller.core.rollouts import Window
from controller.core.trust import StateSigner
from controller.daemon.backends import BackendSync, NudgingOutputs
from controller.daemon.ingest import Ingest, LogGaps
from controller.daemon.metrics import Metrics
from controller.daemon.outputs import Alarms, SigningOutputs, load_signer
from controller.daemon.registries import KeyBook, KeyReloader, Keyring, SegmentService
from controller.daemon.rollouts import Clock, Ownership, Recorder, build_engine, read_windows_file
from controller.daemon.running.closing import Closing
from controller.daemon.running.connecting import connect_kafka, wait_for_kafka, wait_for_redis
from controller.daemon.running.supervisor import EXIT_OK, Service, until_stopped
from controller.daemon.running.topics import TopicKeeper
from controller.daemon.serving import (
    BrokerWatch,
    ConsoleData,
    EventIntake,
    Parts,
    ReadWorker,
    StartUp,
    StatusView,
    health_server,
    http_server,
    kafka_of,
    readiness_of,
    redis_of,
)
from controller.ports import Outputs
from controller.process import Retry, stop_on_signals
from controller.settings import Settings

log = structlog.get_logger("controller.daemon.running.wiring")


async def run(
    settings: Settings,
    *,
    reread: Callable[[], Settings] | None = None,
    clock: Clock | None = None,
) -> int:
    """Run the daemon until SIGTERM/SIGINT; return the process exit code.

    ``reread`` loads the settings again (the config file and the environment):
    SIGHUP reloads the operator keys from it (without it, from ``settings``).
    ``clock`` is what the engine, the alarms and the status read as now (the
    wall clock without it): a test of the whole daemon turns it (#28).
    The team's windows file is read first: a bad one stops the start.
    """
    team_windows = read_windows_file(settings.engine.windows_file)
    log.info("starting", config=settings.masked(), team_windows=len(team_windows))
    _tune_garbage_collector()
    stop = asyncio.Event()
    with stop_on_signals(stop):
        closing = Closing(settings.shutdown_grace_seconds)
        when = _Time(clock or _utcnow, team_windows)
        return await _supervise(settings, stop, closing, reread or (lambda: settings), when)


@dataclass(frozen=True, slots=True)
class _Time:
    """What says when a rollout may move: the clock, and the team's release windows."""

    clock: Clock
    team_windows: tuple[Window, ...]


async def _supervise(
    settings: Settings,
    stop: asyncio.Event,
    closing: Closing,
    reread: Callable[[], Settings],
    when: _Time,
) -> int:
    signer = load_signer(settings.signing)
    metrics = Metrics()
    alarms = Alarms(topics=settings.topics, clock=when.clock, retry=settings.retry)
    startup = StartUp()
    async with AsyncExitStack() as stack:
        if settings.http.enabled:  # probes say what start-up waits for (#29)
            await closing.enter(
                stack, "health listener", health_server(settings, metrics, startup.readiness)
            )
        client = await closing.enter(stack, "redis", connect(settings.redis))
        store = RedisAggregateStore(
            client,
            settings=settings.redis,
            topic=settings.topics.events,
            dedupe=IdWindow(settings.ingest.dedupe_seconds, settings.ingest.dedupe_max_ids),
        )
        ingest, held = _ingest(settings, client, metrics, alarms)
        startup.waiting_for(redis_of(settings))
        await wait_for_redis(store, Retry(stop, settings.retry))
        ownership = Ownership(metrics)
        startup.waiting_for(kafka_of(settings))
        await wait_for_kafka(settings, Retry(stop, settings.retry))
        kafka = await connect_kafka(stack, closing, settings, ingest, ownership)
        alarms.attach(kafka.outputs)
        closing.push(stack, "alarms", alarms.stop)  # before the producer closes
        advisor = None
        if settings.llm.mode != "off":
            advisor = await closing.enter(stack, "advisor", Advisor(settings.llm))
            advisor.check_in_background()  # a model that does not answer is named at start
        states = RolloutStore(client, settings=settings.redis)
        gate_history = RedisGateHistory(client, settings=settings.redis, history=settings.history)
        recorder = Recorder(store=gate_history, settings=settings.history, topics=settings.topics)
        outputs: Outputs = kafka.outputs
        if signer is not None:  # apps that verify hold only states the controller signed (#23)
            outputs = SigningOutputs(
                outputs, flag_state_topic=settings.topics.flag_state, signer=signer
            )
        sync = None
        if settings.unleash.enabled:  # rollouts served from Unleash too (#14)
            sync = BackendSync(
                backend=await closing.enter(stack, "unleash", UnleashAdmin(settings.unleash)),
                records=AppliedStore(client, settings=settings.redis),
                states=states,
                settings=settings.unleash,
                topics=settings.topics,
                outputs=kafka.outputs,
                owns=kafka.control.owns,
                metrics=metrics.backend,
                retry=settings.retry,
            )
            outputs = NudgingOutputs(
                outputs, flag_state_topic=settings.topics.flag_state, nudge=sync.nudge
            )
        segments = await _segments(
            settings,
            SegmentStore(client, settings=settings.redis),
            kafka.outputs,
            signer,
            metrics,
            changed=sync.segment_changed if sync is not None else None,
        )
        engine = build_engine(
            settings=settings.engine,
            llm=settings.llm,
            advisor=advisor,
            metrics=metrics,
            topics=settings.topics,
            states=states,
            aggregates=store,
            outputs=outputs,
            dead_letters=kafka.dead_letters,
            history=recorder,
            backends=frozenset({"unleash"} if sync is not None else set()),
            retry_policy=settings.retry,
            segments=segments,
            app_key_store=AppKeyStore(client, settings=settings.redis),
            held_partitions=held,
            clock=when.clock,
            team_windows=when.team_windows,
        )
        ownership.engine = engine
        brokers = BrokerWatch(settings)  # for /readyz: a hung broker raises no error
        if settings.http.enabled:
            status = StatusView(
                states=states,
                aggregates=store,
                stale_after=timedelta(days=settings.engine.stale_after_days),
                clock=when.clock,
                team_windows=when.team_windows,
            )
            console = ConsoleData(
                states=states,
                history=gate_history,
                status=status,
                clock=when.clock,
                team_windows=when.team_windows,
            )
            # The HTTP intake's own producer: its request timeout bounds how long a
            # batch may wait unsent, so a batch answered 503 is never sent later.
            ack_timeout = settings.http.intake_ack_timeout_seconds
            intake_producer = await closing.enter(
                stack,
                "intake producer",
                Producer(kafka=settings.kafka, request_timeout_ms=int(ack_timeout * 1000)),
            )
            events_in = EventIntake(
                producer=intake_producer,
                ledger=EventLedger(client, settings=settings.redis),
                topic=settings.topics.events,
                dedupe_seconds=settings.http.intake_dedupe_seconds,
                metrics=metrics,
            )
            parts = Parts(
                metrics,
                store,
                states,
                ingest,
                engine,
                kafka.outputs,
                console,
                kafka.control,
                signer,
                status,
                events_in,
                segments,
                KeyBook(AppKeyStore(client, settings=settings.redis)),
                brokers=brokers,
                reads=await closing.enter(
                    stack,
                    "read worker",
                    ReadWorker(
                        settings, signer=signer, clock=when.clock, team_windows=when.team_windows
                    ),
                ),
            )
            await closing.enter(stack, "http server", http_server(settings, parts))
            startup.started(lambda: readiness_of(parts, settings))
        services = {
            "ingest": (
                ingest.run(source=kafka.events, store=store, dead_letters=kafka.dead_letters),
                ingest.stop,
            ),
            "engine": (engine.run(control=kafka.control), engine.stop),
            "brokers": (brokers.run(), brokers.stop),
        }
        services |= _keepers(settings, engine.keys, kafka.outputs, reread, alarms)
        if sync is not None:
            sync.attach(engine.rollouts.apply, segments.reads().held)
            services["backends"] = (sync.run(), sync.stop)
        return await until_stopped(services, stop, settings.shutdown_grace_seconds, closing)
    return EXIT_OK  # pragma: no cover - the context above always returns


def _keepers(
    settings: Settings,
    keyring: Keyring,
    outputs: Publisher,
    reread: Callable[[], Settings],
    alarms: Alarms,
) -> dict[str, Service]:
    """The operator keys reloaded on SIGHUP, and, with ``kafka.create_topics``, topics a
    broker lost created again (#37)."""
    keys = KeyReloader(keyring, lambda: reread().engine.operator_keys, outputs, settings.topics)
    services: dict[str, Service] = {"keys": (keys.run(), keys.stop)}
    if settings.kafka.create_topics:
        keeper = TopicKeeper(kafka=settings.kafka, topics=settings.topics, alarm=alarms)
        services["topics"] = (keeper.run(), keeper.stop)
    return services


def _ingest(
    settings: Settings, client: RedisClient, metrics: Metrics, alarms: Alarms
) -> tuple[Ingest, GapStore]:
    """The ingest loop, and where it holds partitions whose log lost what was counted (#37)."""
    held = GapStore(client, settings=settings.redis, topic=settings.topics.events)
    return Ingest(
        settings=settings.ingest,
        metrics=metrics,
        alarm=alarms,
        retry=settings.retry,
        gaps=LogGaps(store=held, topic=settings.topics.events, alarm=alarms),
    ), held


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _tune_garbage_collector() -> None:
    """Make cyclic garbage collection rare and cheap on the ingest path.

    Ingest allocates thousands of short-lived, acyclic objects per batch
    (records, events), which would trigger a young-generation collection every
    700 allocations. Objects alive after start-up are frozen out of the
    collector's scans, and the young generation may grow larger before a
    collection; reference counting still frees the batch objects at once.
    """
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(50_000, second, third)


async def _segments(
    settings: Settings,
    store: SegmentStore,
    outputs: Publisher,
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
        clock=_utcnow,
        counted=lambda action, outcome: metrics.decisions.labels(action, outcome).inc(),
        changed=changed or (lambda _name: None),
    )
    await segments.republish()
    return segments
