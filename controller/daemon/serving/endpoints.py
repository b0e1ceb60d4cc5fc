"""What the daemon serves over HTTP: the API server, the probes' listener, readiness.

:func:`http_server` builds the API server (flags, OFREP evaluation, the HTTP
event intake and OTLP/HTTP, rollouts, history, the console, monitor webhooks, metrics) from
the running :class:`Parts` (and the check of signed commands ``rolloutctl apply`` asks
before it sends any);
:func:`health_server` the probes' own listener, up before the dependencies
start; :func:`readiness_of` says whether this instance is ready and why not.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.adapters.http import (
    AppAccess,
    AppReadGuard,
    CommandCheckRoute,
    EventIntakeRoutes,
    EventSink,
    HealthServer,
    HoldoutRoutes,
    HttpServer,
    KeyListRoute,
    PipelineRoutes,
    SegmentRoutes,
    is_loopback,
)
from controller.adapters.kafka import ControlConsumer, Publisher
from controller.adapters.ofrep import OfrepRoutes, StreamBounds
from controller.adapters.otlp import Admission, OtlpRoutes
from controller.adapters.redis import RedisAggregateStore, RolloutStore
from controller.core.common import ControllerError
from controller.core.telemetry import Bounds
from controller.core.trust import AppKey, Policy, StateSigner
from controller.core.wire import JsonObject
from controller.daemon.ingest import Ingest
from controller.daemon.metrics import CONTENT_TYPE, Metrics
from controller.daemon.registries import KeyBook, SegmentService
from controller.daemon.rollouts import Engine
from controller.daemon.serving.broker_watch import BrokerWatch
from controller.daemon.serving.console import ConsoleData, HoldoutReads
from controller.daemon.serving.intake import MonitorIntake
from controller.daemon.serving.otlp_intake import OtlpIntake
from controller.daemon.serving.read_worker import ReadWorker, flag_states
from controller.daemon.serving.starting import Readiness, redis_of
from controller.daemon.serving.status import StatusView
from controller.daemon.serving.store_loss import LossGuard
from controller.settings import HttpSettings, Settings


@dataclass(frozen=True, slots=True)
class Parts:
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
    events_in: EventSink
    segments: SegmentService | None = None
    app_keys: KeyBook | None = None
    reads: ReadWorker | None = None
    brokers: BrokerWatch | None = None
    otlp_in: OtlpIntake | None = None
    side_ingests: Mapping[str, Ingest] = field(default_factory=dict)
    holdouts: HoldoutReads | None = None
    """The holdouts' reports (the read worker builds them, off the event loop)."""
    loss: LossGuard | None = None
    """The flags the store lost, served from their last state until they are back."""
    """Ingests of other topics (the Collector's), by role; their stalls make it not ready."""


def http_server(settings: Settings, parts: Parts) -> HttpServer:
    """The API server over the running ``parts``: reads, OFREP, the event intake, webhooks."""
    token = settings.http.webhook_token
    secret = token.get_secret_value() if token else None
    access = app_access(settings.http, parts.app_keys, parts.metrics)
    return HttpServer(
        host=settings.http.host,
        port=settings.http.port,
        readiness=lambda: readiness_of(parts, settings),
        flags=lambda: flag_states(parts.states, parts.signer, parts.loss),
        metrics=parts.metrics.exposition,
        metrics_content_type=CONTENT_TYPE,
        rollouts=parts.status,
        history=parts.console.history,
        console=parts.console,
        monitors=_monitor_intake(settings, parts),
        webhook_token=secret,
        limits=settings.http,
        ofrep=_ofrep_routes(settings, parts, access),
        intake=_event_routes(settings, parts, access),
        otlp=_otlp_routes(settings, parts, access),
        app_keys=_key_list_route(settings, parts, secret),
        pipelines=_pipeline_routes(parts, secret),
        holdouts=None if parts.holdouts is None else HoldoutRoutes(parts.holdouts, token=secret),
        command_check=CommandCheckRoute(
            parts.engine.commands.check,
            token=secret,
            body_timeout_seconds=settings.http.body_timeout_seconds,
        ),
        segments=segment_routes(
            parts, AppReadGuard(access, public=settings.http.public_flags, operator_token=secret)
        ),
        flag_list=None if parts.reads is None else parts.reads.flag_list,
        rollout_list=None if parts.reads is None else parts.reads.rollout_list,
        count_reads_limited=parts.metrics.reads_rate_limited.inc,
        access=access,
        environments=lambda: parts.engine.keys.environments,  # reloaded on SIGHUP
    )


def _pipeline_routes(parts: Parts, token: str | None) -> PipelineRoutes | None:
    """``GET /pipelines/{flag}``, where the engine runs release pipelines."""
    pipelines = parts.engine.pipelines
    return None if pipelines is None else PipelineRoutes(pipelines.status, token=token)


def _monitor_intake(settings: Settings, parts: Parts) -> MonitorIntake:
    """Where monitor webhooks go: claimed per incident, published on the monitors topic."""
    return MonitorIntake(
        claims=parts.states,
        outputs=parts.outputs,
        topic=settings.topics.monitors,
        monitors=settings.engine.monitors,
        dedupe_seconds=settings.http.webhook_dedupe_seconds,
        metrics=parts.metrics,
    )


def _ofrep_routes(settings: Settings, parts: Parts, access: AppAccess) -> OfrepRoutes:
    """OFREP evaluates from a snapshot of the states; it needs no signatures."""
    return OfrepRoutes(
        parts.reads.states if parts.reads else lambda: flag_states(parts.states, None, parts.loss),
        body_timeout_seconds=settings.http.body_timeout_seconds,
        access=access,
        requests_per_second=settings.http.ofrep_requests_per_second,
        count_limited=lambda route: parts.metrics.ofrep_rate_limited.labels(route).inc(),
        segments=None if parts.segments is None else parts.segments.reads().held,
        environments=lambda: parts.engine.keys.environments,  # reloaded on SIGHUP
        streams=StreamBounds(
            max_streams=settings.http.ofrep_max_streams,
            per_client=settings.http.ofrep_streams_per_key,
            lifetime_seconds=settings.http.ofrep_stream_max_seconds,
        ),
    )


def _event_routes(settings: Settings, parts: Parts, access: AppAccess) -> EventIntakeRoutes:
    """``POST /v1/events``: apps' events over HTTP, bounded as ``http.intake_*`` say."""
    return EventIntakeRoutes(
        parts.events_in,
        max_body_bytes=settings.http.intake_max_body_bytes,
        max_events=settings.http.intake_max_events,
        max_event_bytes=settings.ingest.max_event_bytes,
        events_per_second=settings.http.intake_events_per_second,
        body_timeout_seconds=settings.http.body_timeout_seconds,
        access=access,
        default_environment=lambda: parts.engine.keys.environments.default,
    )


def _otlp_routes(settings: Settings, parts: Parts, access: AppAccess) -> OtlpRoutes | None:
    """``POST /v1/traces`` and ``/v1/logs``: OTLP/HTTP, bounded as ``http.otlp_*`` and the
    event intake's body bound and time-out say; none unless ``http.otlp_enabled``."""
    http = settings.http
    if parts.otlp_in is None or not http.otlp_enabled:
        return None
    return OtlpRoutes(
        parts.otlp_in,
        max_body_bytes=http.intake_max_body_bytes,
        max_decoded_bytes=http.otlp_max_decoded_bytes,
        items_per_second=http.otlp_items_per_second,
        body_timeout_seconds=http.body_timeout_seconds,
        bounds=otlp_bounds(http),
        access=access,
        default_environment=lambda: parts.engine.keys.environments.default,
        admission=Admission(slots=http.otlp_max_in_flight, waiting=http.otlp_max_waiting),
        answer_seconds=http.otlp_answer_seconds,
    )


def otlp_bounds(http: HttpSettings) -> Bounds:
    """What one OTLP export, and one item of it, may hold."""
    return Bounds(
        max_items=http.otlp_max_items,
        max_attributes=http.otlp_max_attributes,
        max_events=http.otlp_max_attributes,
    )


def _key_list_route(settings: Settings, parts: Parts, token: str | None) -> KeyListRoute | None:
    """``/app-keys``, for the webhook token only; none without the app keys' book."""
    if parts.app_keys is None:
        return None
    return KeyListRoute(
        parts.app_keys.listing, token=token, loopback=is_loopback(settings.http.host)
    )


def segment_routes(parts: Parts, guard: AppReadGuard | None = None) -> SegmentRoutes | None:
    """``/v1/segments``, read through the segment service's store."""
    if parts.segments is None:
        return None
    reads = parts.segments.reads()
    key_id = parts.signer.key_id if parts.signer is not None else None
    return SegmentRoutes(
        listing=reads.listing,
        version=reads.version,
        whole=reads.whole,
        key_id=key_id,
        guard=guard,
    )


def app_access(settings: HttpSettings, book: KeyBook | None, metrics: Metrics) -> AppAccess:
    """The keys and origins policy of OFREP and the event intake (docs/clients.md, "App keys
    and browsers"): keys required as ``http.require_app_keys`` says, else unless bound to
    loopback (the console's rule for its token)."""
    required = settings.require_app_keys
    if required is None:
        required = not is_loopback(settings.host)
    policy = Policy(require_keys=required, origins=frozenset(settings.cors_origins))
    if book is None:
        return AppAccess(_no_keys, policy)
    return AppAccess(book.get, policy, count=metrics.count_app_refusal, fresh=book.fresh)


async def _no_keys() -> Mapping[str, AppKey]:
    return {}


def health_server(settings: Settings, metrics: Metrics, readiness: Readiness) -> HealthServer:
    """The probes' own listener (see :mod:`controller.adapters.http.health`)."""
    return HealthServer(
        host=settings.http.host,
        port=settings.http.health_port,
        readiness=readiness,
        metrics=metrics.exposition,
        metrics_content_type=CONTENT_TYPE,
        limits=settings.http,
    )


async def readiness_of(parts: Parts, settings: Settings) -> tuple[bool, JsonObject]:
    """Ready: Redis and the brokers answer, this instance owns events partitions, and no loop
    is stalled.

    The detail names the partitions this instance owns: the events partitions
    whose aggregates it writes and the commands partitions whose flags it gates;
    and the events partitions assigned to it but not ingested now (being claimed,
    fenced, replaying what Redis lost), which stall readiness once they have
    waited ``ingest.stall_after_seconds``. Events partitions held for an operator's
    choice (their log lost what was counted: :mod:`controller.daemon.ingest.log_gaps`) make it
    not ready at once. Stages this instance gates that wait for their evidence, about to
    move or past their planned end (partitions behind the broker's log end, lagging or
    held), are named (``evidence_behind``), readiness unchanged. The Collector's topics'
    ingests (``otlp.enabled``) are named with their partitions too, and stall readiness as
    the events ingest does. A store that lost the controller's data is named in every
    answer (``degraded``, each flag served from its last state meanwhile), readiness
    unchanged by it.
    """
    owned: JsonObject = {
        "partitions": parts.ingest.owned_partitions,
        "events_partitions": [*parts.ingest.owned_partition_ids],
        "events_partitions_waiting": [*parts.ingest.waiting_partition_ids],
        "commands_partitions": [*parts.control.owned_partitions()],
        **{
            f"{role}_partitions": [*i.owned_partition_ids] for role, i in parts.side_ingests.items()
        },
        **_degraded(parts.loss),
    }
    try:
        await parts.store.ping()
    except ControllerError as exc:
        return False, {"reason": redis_of(settings).down(str(exc)), **owned}
    if parts.brokers is not None and (silent := parts.brokers.silent()) is not None:
        return False, {"reason": silent, **owned}
    held = parts.ingest.held() or next(
        (why for i in parts.side_ingests.values() if (why := i.held()) is not None), None
    )
    if held is not None:
        return False, {"reason": held, **owned}
    if parts.ingest.owned_partitions == 0:
        return False, {"reason": "no events partitions assigned yet", **owned}
    now = time.monotonic()
    limit = settings.engine.stall_after_seconds
    # Every stall is named, not the first: an operator reading "gate loop stalled"
    # while ingest is stalled too would look in the wrong place.
    stalls = [
        *([why] if (why := parts.ingest.stalled(now)) is not None else []),
        *_side_stalled(parts.side_ingests, now),
        *_loop_stalled(parts.engine, now, limit),
    ]
    if stalls:
        return False, {"reason": "; ".join(stalls), **owned}
    return True, owned | _evidence_behind(parts.engine)


def _degraded(guard: LossGuard | None) -> JsonObject:
    """The store that lost the controller's data, while flags are served from their last
    state: named, readiness unchanged (a 503 would take out of service the instance that
    serves those states; the ``store_lost`` alert is what pages); and the flags it lost and
    has again since the instance started."""
    if guard is None:
        return {}
    degraded, recovered = guard.loss.degraded(), guard.loss.recovered()
    said: JsonObject = {} if degraded is None else {"degraded": degraded}
    return said if recovered is None else {**said, "store_recovered": recovered}


def _evidence_behind(engine: Engine) -> JsonObject:
    """The stages about to move, or past their planned end, that wait for partitions to catch
    up with the broker's log end, named with their records behind and owners: a detail, not
    a cause to be unready (the owner is most often another instance, whose own readiness
    says whether its ingest stalled)."""
    catch_up = engine.gates.evidence.catch_up
    waiting = catch_up.report() if catch_up is not None else {}
    return {"evidence_behind": waiting} if waiting else {}


def _side_stalled(ingests: Mapping[str, Ingest], now: float) -> list[str]:
    return [
        f"{role} {why}"
        for role, ingest in sorted(ingests.items())
        if (why := ingest.stalled(now)) is not None
    ]


def _loop_stalled(engine: Engine, now: float, limit: float) -> list[str]:
    return [
        f"{name} loop stalled: no pass completed for {now - last:.0f} s"
        for name, last in (("gate", engine.last_gate_pass), ("command", engine.last_control_pass))
        if now - last > limit
    ]
