"""Wiring: build every part from the settings, run them under one supervisor.

Start order: the health listener (its ``/readyz`` names the dependency
start-up waits for) → Redis client → stores → topics → producers → consumers → the
ingest and engine tasks. Stop order is the reverse. SIGTERM or SIGINT asks ingest to
drain (stop fetching, flush the batch in hand, commit) within
``shutdown_grace_seconds``; past that the tasks are cancelled, which loses
nothing, because an unflushed batch is replayed from the stored offset.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from controller.adapters.health import HealthServer
from controller.adapters.http import HttpServer
from controller.adapters.kafka import (
    ControlConsumer,
    DeadLetterPublisher,
    EventConsumer,
    Producer,
    Publisher,
    ensure_topics,
    topic_names,
)
from controller.adapters.llm import Advisor
from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.applied import AppliedStore
from controller.adapters.redis.history import RedisGateHistory
from controller.adapters.redis.rollouts import RolloutStore
from controller.adapters.unleash import UnleashAdmin
from controller.core.errors import BrokerUnavailable, ControllerError
from controller.core.signing import StateSigner
from controller.core.views import FlagStates, FlagStateView
from controller.daemon.alarms import Alarms
from controller.daemon.backends import BackendSync, NudgingOutputs
from controller.daemon.console import ConsoleData
from controller.daemon.engine import Engine, Ownership, build_engine
from controller.daemon.history import Recorder
from controller.daemon.ingest import Ingest
from controller.daemon.intake import MonitorIntake
from controller.daemon.keyring import KeyReloader
from controller.daemon.metrics import CONTENT_TYPE, Metrics
from controller.daemon.rendering import flag_state_fields
from controller.daemon.signed import SigningOutputs, load_signer, signed_states
from controller.daemon.starting import Readiness, StartUp, kafka_of, redis_of
from controller.daemon.status import StatusView, readable
from controller.ports import Outputs
from controller.retrying import Retry
from controller.settings import Settings
from controller.stopping import stop_on_signals

log = structlog.get_logger("controller.daemon.wiring")

EXIT_OK = 0
EXIT_FORCED = 3
KAFKA_PROBE_SECONDS = 5.0
"""One start-up metadata request to the brokers waits at most this long before a retry."""


async def run(settings: Settings, *, reread: Callable[[], Settings] | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; return the process exit code.

    ``reread`` loads the settings again (the config file and the environment):
    SIGHUP reloads the operator keys from it (without it, from ``settings``).
    """
    log.info("starting", config=settings.masked())
    _tune_garbage_collector()
    stop = asyncio.Event()
    with stop_on_signals(stop):
        return await _supervise(settings, stop, reread or (lambda: settings))


async def _supervise(
    settings: Settings, stop: asyncio.Event, reread: Callable[[], Settings]
) -> int:
    signer = load_signer(settings.signing)
    metrics = Metrics()
    alarms = Alarms(topics=settings.topics, clock=_utcnow, retry=settings.retry)
    ingest = Ingest(settings=settings.ingest, metrics=metrics, alarm=alarms, retry=settings.retry)
    startup = StartUp()
    async with AsyncExitStack() as stack:
        if settings.http.enabled:  # probes say what start-up waits for (#29)
            await stack.enter_async_context(_health_server(settings, metrics, startup.readiness))
        client = await stack.enter_async_context(connect(settings.redis))
        store = RedisAggregateStore(client, settings=settings.redis, topic=settings.topics.events)
        startup.waiting_for(redis_of(settings))
        await _wait_for_redis(store, Retry(stop, settings.retry))
        ownership = Ownership(metrics)
        startup.waiting_for(kafka_of(settings))
        await _wait_for_kafka(settings, Retry(stop, settings.retry))
        kafka = await _connect_kafka(stack, settings, ingest, ownership)
        alarms.attach(kafka.outputs)
        stack.push_async_callback(alarms.stop)  # before the producer closes
        advisor = None
        if settings.llm.mode != "off":
            advisor = await stack.enter_async_context(Advisor(settings.llm))
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
                backend=await stack.enter_async_context(UnleashAdmin(settings.unleash)),
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
        )
        ownership.engine = engine
        if settings.http.enabled:
            stale_after = timedelta(days=settings.engine.stale_after_days)
            status = StatusView(
                states=states, aggregates=store, stale_after=stale_after, clock=_utcnow
            )
            console = ConsoleData(states=states, history=gate_history, status=status, clock=_utcnow)
            parts = _Parts(
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
            )
            await stack.enter_async_context(_http_server(settings, parts))
            startup.started(lambda: _readiness(parts, settings))
        services = {
            "ingest": (
                ingest.run(source=kafka.events, store=store, dead_letters=kafka.dead_letters),
                ingest.stop,
            ),
            "engine": (engine.run(control=kafka.control), engine.stop),
        }
        keys = KeyReloader(
            engine.keys, lambda: reread().engine.operator_keys, kafka.outputs, settings.topics
        )
        services["keys"] = (keys.run(), keys.stop)
        if sync is not None:
            sync.attach(engine.rollouts.apply)
            services["backends"] = (sync.run(), sync.stop)
        return await _until_stopped(services, stop, settings.shutdown_grace_seconds)
    return EXIT_OK  # pragma: no cover - the context above always returns


@dataclass(frozen=True, slots=True)
class _Kafka:
    dead_letters: DeadLetterPublisher
    outputs: Publisher
    control: ControlConsumer
    events: EventConsumer


async def _connect_kafka(
    stack: AsyncExitStack, settings: Settings, ingest: Ingest, ownership: Ownership
) -> _Kafka:
    """Create missing topics, then start the producer and both consumers."""
    if settings.kafka.create_topics:
        created = await ensure_topics(settings.kafka, settings.topics)
        if created:
            log.info("topics_created", topics=created)
    producer = await stack.enter_async_context(Producer(kafka=settings.kafka))
    topics = settings.topics
    control = ControlConsumer(
        kafka=settings.kafka,
        commands=topics.commands,
        monitors=topics.monitors,
        on_assignment=ownership.assigned,
    )
    events = EventConsumer(
        kafka=settings.kafka,
        topic=topics.events,
        listener=ingest,
        start_from=settings.ingest.start_from,
    )
    return _Kafka(
        dead_letters=DeadLetterPublisher(producer=producer, topic=topics.dlq),
        outputs=Publisher(producer=producer),
        control=await stack.enter_async_context(control),
        events=await stack.enter_async_context(events),
    )


@dataclass(frozen=True, slots=True)
class _Parts:
    """What the HTTP server shows and feeds."""

    metrics: Metrics
    store: RedisAggregateStore
    states: RolloutStore
    ingest: Ingest
    engine: Engine
    outputs: Publisher
    console: ConsoleData
    control: ControlConsumer
    signer: StateSigner | None
    status: StatusView


def _http_server(settings: Settings, parts: _Parts) -> HttpServer:
    token = settings.http.webhook_token
    intake = MonitorIntake(
        claims=parts.states,
        outputs=parts.outputs,
        topic=settings.topics.monitors,
        monitors=settings.engine.monitors,
        dedupe_seconds=settings.http.webhook_dedupe_seconds,
        metrics=parts.metrics,
    )
    return HttpServer(
        host=settings.http.host,
        port=settings.http.port,
        readiness=lambda: _readiness(parts, settings),
        flags=lambda: flag_states(parts.states, parts.signer),
        metrics=parts.metrics.exposition,
        metrics_content_type=CONTENT_TYPE,
        rollouts=parts.status,
        history=parts.console.history,
        console=parts.console,
        monitors=intake,
        webhook_token=token.get_secret_value() if token else None,
        limits=settings.http,
    )


def _health_server(settings: Settings, metrics: Metrics, readiness: Readiness) -> HealthServer:
    """The probes' own listener (see :mod:`controller.adapters.health`)."""
    return HealthServer(
        host=settings.http.host,
        port=settings.http.health_port,
        readiness=readiness,
        metrics=metrics.exposition,
        metrics_content_type=CONTENT_TYPE,
        limits=settings.http,
    )


Service = tuple[Coroutine[Any, Any, None], Callable[[], None]]


async def _until_stopped(services: dict[str, Service], stop: asyncio.Event, grace: float) -> int:
    """Run the services until SIGTERM or until one dies; then stop all within ``grace``.

    Stopping asks each service to finish the work in hand (ingest flushes its
    batch, the engine its current decision); past the grace period the tasks
    are cancelled. A service that died takes the daemon down with its error.
    """
    tasks = {asyncio.create_task(coro, name=name): halt for name, (coro, halt) in services.items()}
    stopper = asyncio.create_task(stop.wait(), name="signals")
    done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    died = [t for t in done if t is not stopper and (t.cancelled() or t.exception())]
    log.info("draining", grace_s=grace, cause="signal" if not died else died[0].get_name())
    for halt in tasks.values():
        halt()
    try:
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=grace)
    except TimeoutError:
        log.warning("drain_timed_out", grace_s=grace)
        return EXIT_FORCED
    for task in died:
        task.result()  # re-raise the error that stopped the daemon
    log.info("stopped")
    return EXIT_OK


async def _readiness(parts: _Parts, settings: Settings) -> tuple[bool, dict[str, Any]]:
    """Ready: Redis answers, this instance owns events partitions, and no loop is stalled.

    The detail names the partitions this instance owns: the events partitions
    whose aggregates it writes and the commands partitions whose flags it gates;
    and the events partitions assigned to it but not ingested now (being claimed,
    fenced, replaying what Redis lost), which stall readiness once they have
    waited ``ingest.stall_after_seconds``.
    """
    owned = {
        "partitions": parts.ingest.owned_partitions,
        "events_partitions": parts.ingest.owned_partition_ids,
        "events_partitions_waiting": parts.ingest.waiting_partition_ids,
        "commands_partitions": parts.control.owned_partitions(),
    }
    try:
        await parts.store.ping()
    except ControllerError as exc:
        return False, {"reason": redis_of(settings).down(str(exc)), **owned}
    if parts.ingest.owned_partitions == 0:
        return False, {"reason": "no events partitions assigned yet", **owned}
    now = time.monotonic()
    limit = settings.engine.stall_after_seconds
    stall = parts.ingest.stalled(now) or _loop_stalled(parts.engine, now, limit)
    if stall is not None:
        return False, {"reason": stall, **owned}
    return True, owned


def _loop_stalled(engine: Engine, now: float, limit: float) -> str | None:
    for name, last in (("gate", engine.last_gate_pass), ("command", engine.last_control_pass)):
        if now - last > limit:
            return f"{name} loop stalled: no pass completed for {now - last:.0f} s"
    return None


async def flag_states(states: RolloutStore, signer: StateSigner | None) -> FlagStates:
    """Every flag's current state as apps see it (signed, with a key), in two round trips."""
    loaded = [readable(found).rollout for found in (await states.load_all()).values()]
    fields = [flag_state_fields(rollout) for rollout in loaded if rollout is not None]
    return FlagStates([FlagStateView.model_validate(s) for s in signed_states(fields, signer)])


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


async def _wait_for_redis(store: RedisAggregateStore, retry: Retry) -> None:
    """Return once Redis answers (or stopping was asked); a permanent error is raised."""
    await retry(store.ping, "waiting for redis")


async def _wait_for_kafka(settings: Settings, retry: Retry) -> None:
    """Return once the brokers answer a metadata request (or stopping was asked).

    Until then ``/readyz`` says start-up waits for Kafka, as it does for Redis,
    instead of the daemon exiting at its first refused connection.
    """

    async def metadata() -> None:
        try:
            await topic_names(settings.kafka, timeout_s=KAFKA_PROBE_SECONDS)
        except TimeoutError as exc:
            raise BrokerUnavailable(f"no metadata within {KAFKA_PROBE_SECONDS:g} s") from exc

    await retry(metadata, "waiting for kafka")
