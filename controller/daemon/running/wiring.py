"""Wiring: build every part from the settings, run them under one supervisor.

Start order: the health listener (its ``/readyz`` names the dependency
start-up waits for) → Redis client → stores → topics → producers → consumers → the
ingest and engine tasks. Stop order is the reverse. SIGTERM or SIGINT asks ingest to
drain (stop fetching, flush the batch in hand, commit) within
``shutdown_grace_seconds``; past that the tasks are cancelled, which loses
nothing, because an unflushed batch is replayed from the stored offset.
Waiting for Redis and the brokers and starting the Kafka clients are in
:mod:`controller.daemon.running.connecting`, the parts built over them (the rollouts'
stores, the engine, the HTTP API, the services) in :mod:`controller.daemon.running.assembly`,
the drain in :mod:`controller.daemon.running.supervisor`.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from contextlib import AsyncExitStack

import structlog

from controller.adapters.redis import GapStore, IdWindow, RedisAggregateStore, connect
from controller.daemon.ingest import CountedThrough, Ingest, LogGaps, counted_through
from controller.daemon.metrics import Metrics
from controller.daemon.outputs import Alarms, load_signer
from controller.daemon.rollouts import Clock, Ownership, read_windows_file
from controller.daemon.running.assembly import (
    Daemon,
    RedisSide,
    Run,
    Time,
    engine_of,
    rollout_side,
    services_of,
    utcnow,
)
from controller.daemon.running.closing import Closing
from controller.daemon.running.connecting import (
    KafkaClients,
    connect_kafka,
    wait_for_kafka,
    wait_for_redis,
)
from controller.daemon.running.http_side import serve_http
from controller.daemon.running.otlp_topics import otlp_services
from controller.daemon.running.supervisor import EXIT_OK, until_stopped
from controller.daemon.serving import BrokerWatch, StartUp, health_server, kafka_of, redis_of
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
    wall clock without it): a test of the whole daemon turns it.
    The team's windows file is read first: a bad one stops the start.
    """
    team_windows = read_windows_file(settings.engine.windows_file)
    log.info("starting", config=settings.masked(), team_windows=len(team_windows))
    _tune_garbage_collector()
    stop = asyncio.Event()
    with stop_on_signals(stop):
        closing = Closing(settings.shutdown_grace_seconds)
        when = Time(clock or utcnow, team_windows)
        return await _supervise(settings, stop, closing, reread or (lambda: settings), when)


async def _supervise(
    settings: Settings,
    stop: asyncio.Event,
    closing: Closing,
    reread: Callable[[], Settings],
    when: Time,
) -> int:
    signer = load_signer(settings.signing)
    metrics = Metrics()
    alarms = Alarms(topics=settings.topics, clock=when.clock, retry=settings.retry)
    async with AsyncExitStack() as stack:
        run = Run(settings, stop, closing, stack, when, reread, signer, metrics, alarms, StartUp())
        if settings.http.enabled:  # probes say what start-up waits for
            await run.enter(
                "health listener", health_server(settings, metrics, run.startup.readiness)
            )
        redis = await _connect_redis(run)
        ownership = Ownership(metrics)
        kafka = await _connect_kafka(run, redis.ingest, ownership)
        rollouts = await rollout_side(run, redis.client, kafka)
        engine = engine_of(run, redis, kafka, rollouts)
        ownership.engine = engine
        daemon = Daemon(redis, kafka, rollouts, engine, BrokerWatch(settings))
        if settings.http.enabled:
            await serve_http(run, daemon)
        otlp = await otlp_services(run, daemon)  # the Collector's topics, when enabled
        services = services_of(run, daemon) | otlp
        return await until_stopped(services, stop, settings.shutdown_grace_seconds, closing)
    return EXIT_OK  # pragma: no cover - the context above always returns


async def _connect_redis(run: Run) -> RedisSide:
    """Redis connected and answering; the aggregates and the ingest loop over it."""
    settings = run.settings
    client = await run.enter("redis", connect(settings.redis))
    store = RedisAggregateStore(
        client,
        settings=settings.redis,
        topic=settings.topics.events,
        dedupe=IdWindow(settings.ingest.dedupe_seconds, settings.ingest.dedupe_max_ids),
        copy_budget=settings.ingest.cell_copy_mb * 2**20,
    )
    events = settings.topics.events
    held = {
        topic: GapStore(
            client, settings=settings.redis, topic=events, source=None if topic == events else topic
        )
        for topic in _read(settings)
    }
    counted = counted_through(client, settings, events, run.when.clock)
    ingest = _ingest(settings, held[events], run.metrics, run.alarms, counted)
    run.startup.waiting_for(redis_of(settings))
    await wait_for_redis(store, Retry(run.stop, settings.retry))
    return RedisSide(client, store, ingest, held)


def _read(settings: Settings) -> list[str]:
    """The topics ingested: the events topic, and the Collector's when ``otlp.enabled``."""
    otlp = settings.otlp
    return [settings.topics.events, *((otlp.spans_topic, otlp.logs_topic) if otlp.enabled else ())]


async def _connect_kafka(run: Run, ingest: Ingest, ownership: Ownership) -> KafkaClients:
    """The brokers answering, then the Kafka clients started; alarms publish through them."""
    settings = run.settings
    run.startup.waiting_for(kafka_of(settings))
    await wait_for_kafka(settings, Retry(run.stop, settings.retry))
    kafka = await connect_kafka(run.stack, run.closing, settings, ingest, ownership)
    run.alarms.attach(kafka.outputs)
    run.closing.push(run.stack, "alarms", run.alarms.stop)  # before the producer closes
    return kafka


def _ingest(
    settings: Settings, held: GapStore, metrics: Metrics, alarms: Alarms, counted: CountedThrough
) -> Ingest:
    """The ingest loop, holding partitions whose log lost what was counted in ``held``, and
    recording in ``counted`` the partitions counted through."""
    return Ingest(
        counted=counted,
        settings=settings.ingest,
        metrics=metrics,
        alarm=alarms,
        retry=settings.retry,
        gaps=LogGaps(
            store=held,
            topic=settings.topics.events,
            alarm=alarms,
            repeat_every=settings.ingest.held_alert_repeat_seconds,
        ),
    )


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
