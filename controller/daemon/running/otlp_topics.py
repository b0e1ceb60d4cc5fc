"""The OpenTelemetry Collector's Kafka topics, ingested beside the events topic.

With ``otlp.enabled``, each of ``otlp.spans_topic`` and ``otlp.logs_topic`` is
read by an :class:`~controller.daemon.ingest.Ingest` of its own: its own
consumer group (``<group_id>.otlp_spans``, ``<group_id>.otlp_logs``), so its
rebalances never touch the events topic's, its own partition claims and
offsets in Redis (namespaced by the topic, see
:mod:`controller.adapters.redis.aggregates`), and a folder that decodes each
record as an export in the topic's encoding and translates it. Both share one
translator, so a log record's evaluation joins the server span its trace
sent on the other topic.

What a flag's telemetry means (its arms, its unit, its versions) is asked of
one :class:`Flags`, built in :func:`flags_of`, the one place to give the
ingest another: kept fresh by a service of its own, read before the first
record is folded (an evaluation of a flag not known yet would be refused).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import structlog

from controller.adapters.kafka import EventConsumer, ensure_topics
from controller.adapters.otlp import decode_logs_proto, decode_traces_flat
from controller.adapters.redis import GapStore, IdWindow, RedisAggregateStore
from controller.core.common import ControllerError
from controller.core.rollouts import Rollout
from controller.core.telemetry import (
    Bounds,
    FlagRules,
    Translator,
    decode_logs_json,
    decode_traces_json,
)
from controller.daemon.ingest import (
    CountedThrough,
    DecodeLogs,
    DecodeSpans,
    Ingest,
    LogGaps,
    OtlpFolder,
    counted_through,
)
from controller.daemon.registries import FlagDirectory
from controller.daemon.running.assembly import Daemon, Run
from controller.daemon.running.supervisor import Service
from controller.daemon.serving import translator_of
from controller.process import Retry
from controller.settings import Settings

log = structlog.get_logger("controller.daemon.running.otlp_topics")
FRESH_EVERY_SECONDS = 1.0
"""How often the flags' rules are read again."""


class Flags(Protocol):
    """What the OTLP ingest asks of the flags: each one's rules, kept fresh."""

    async def fresh(self) -> None:
        """Have the rules loaded (the first call waits), and read again when old."""
        ...

    def lookup(self, flag: str) -> FlagRules | None: ...


def flags_of(daemon: Daemon, *, max_age: float) -> Flags:
    """The flags the OTLP topics are translated against: the same directory as OTLP/HTTP's
    (each rollout's rules and the times its versions came into force), over the store."""
    states = daemon.rollouts.states

    async def rollouts() -> list[Rollout]:
        loaded = await states.load_all()
        return [
            state.rollout
            for state in loaded.values()
            if not isinstance(state, ControllerError) and state.rollout is not None
        ]

    return FlagDirectory(rollouts, max_age=max_age)


async def otlp_services(run: Run, daemon: Daemon, flags: Flags | None = None) -> dict[str, Service]:
    """The ingest of each OTLP topic and the flags' freshening; none unless ``otlp.enabled``."""
    settings = run.settings
    if not settings.otlp.enabled:
        return {}
    http = settings.http
    flags = flags or flags_of(daemon, max_age=http.otlp_flags_max_age_seconds)
    await Retry(run.stop, settings.retry)(flags.fresh, "read the flags for otlp")
    if settings.kafka.create_topics:
        await _create_topics(settings)
    translator = translator_of(http, flags.lookup)  # one for both topics, as OTLP/HTTP's
    otlp = settings.otlp
    services: dict[str, Service] = {}
    for role, topic in (("otlp_spans", otlp.spans_topic), ("otlp_logs", otlp.logs_topic)):
        services[role] = await _topic(run, daemon, role, topic, translator)
    freshening = _Freshening(flags)
    services["otlp_flags"] = (freshening.run(), freshening.stop)
    return services


async def _topic(
    run: Run, daemon: Daemon, role: str, topic: str, translator: Translator
) -> Service:
    """The ingest of one OTLP topic: its consumer started, its store, its loop."""
    settings = run.settings
    counted = counted_through(daemon.redis.client, run.settings, topic, run.when.clock)
    ingest = _ingest(run, role, topic, translator, (daemon.redis.held[topic], counted))
    daemon.side_ingests[role] = ingest  # /readyz names it when it stalls
    consumer = EventConsumer(
        kafka=settings.kafka,
        topic=topic,
        listener=ingest,
        start_from=settings.ingest.start_from,
        fetch_min_bytes=settings.ingest.fetch_min_bytes,
        fetch_max_wait_ms=settings.ingest.fetch_max_wait_ms,
        group_id=f"{settings.kafka.group_id}.{role}",
    )
    source = await run.enter(f"{role} consumer", consumer)
    store = RedisAggregateStore(
        daemon.redis.client,
        settings=settings.redis,
        topic=settings.topics.events,
        dedupe=IdWindow(settings.ingest.dedupe_seconds, settings.otlp.dedupe_max_ids),
        source=topic,
    )
    dead_letters = daemon.kafka.dead_letters
    return ingest.run(source=source, store=store, dead_letters=dead_letters), ingest.stop


def _ingest(
    run: Run, role: str, topic: str, translator: Translator, kept: tuple[GapStore, CountedThrough]
) -> Ingest:
    """The ingest loop of the Collector's ``topic``; ``kept``: where its held partitions and
    its counted-through times are kept."""
    held, counted = kept
    settings = run.settings
    otlp = settings.otlp
    json = otlp.encoding_of(topic) == "otlp_json"
    decode: DecodeSpans | DecodeLogs
    if role == "otlp_spans":
        decode = decode_traces_json if json else decode_traces_flat
    else:
        decode = decode_logs_json if json else decode_logs_proto
    signal = "traces" if role == "otlp_spans" else "logs"
    folder = OtlpFolder(
        topic=topic,
        decode=decode,
        translator=translator,
        bounds=Bounds(),
        max_record_bytes=otlp.max_record_bytes,
        ignored=run.metrics.otlp.ignored.labels("kafka", signal).inc,
    )
    batches = settings.ingest.model_copy(update={"max_batch_records": otlp.max_batch_records})
    return Ingest(
        settings=batches,
        metrics=run.metrics,
        alarm=run.alarms,
        retry=settings.retry,
        folder=folder,
        role=role,
        counted=counted,
        gaps=LogGaps(
            store=held,
            topic=topic,
            alarm=run.alarms,
            beside=True,
            repeat_every=run.settings.ingest.held_alert_repeat_seconds,
        ),
    )


async def _create_topics(settings: Settings) -> None:
    otlp, partitions = settings.otlp, settings.kafka.events_partitions
    more = {otlp.spans_topic: partitions, otlp.logs_topic: partitions}
    created = await ensure_topics(settings.kafka, settings.topics, more=more)
    if created:
        log.info("topics_created", topics=created)


class _Freshening:
    """Reads the flags' rules again every :data:`FRESH_EVERY_SECONDS` until stopped."""

    def __init__(self, flags: Flags) -> None:
        self._flags = flags
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), FRESH_EVERY_SECONDS)
            if self._stopping.is_set():
                return
            try:
                await self._flags.fresh()
            except ControllerError as exc:  # the rules held go on; the next look tries again
                log.warning("otlp_flags_unread", error=str(exc)[:300])
