"""The daemon's small HTTP server: health, readiness, metrics and flag states.

``/healthz`` answers while the event loop runs; ``/readyz`` is 200 only when
Redis answers and this instance owns events partitions (503 with the reason
otherwise); ``/metrics`` is the Prometheus text format. ``/flags``,
``/rollouts``, ``/rollouts/{flag}``, ``/rollouts/{flag}/history`` and
``/rollouts/{flag}/verdict`` are the read API (:mod:`controller.adapters.http.read_routes`).
``/ui`` is the web console (:mod:`controller.adapters.http.web_console`). ``/ofrep/v1/...`` is
the OpenFeature Remote Evaluation Protocol (:mod:`controller.adapters.ofrep.routes`).
``POST /v1/events`` takes apps' events (:mod:`controller.adapters.http.event_intake`),
``POST /v1/traces`` and ``POST /v1/logs`` their OpenTelemetry exports
(:mod:`controller.adapters.otlp.routes`); ``GET /v1/segments[/{name}]`` serve segments
with ETags (:mod:`controller.adapters.http.segment_routes`). ``/app-keys`` lists the app
keys (:mod:`controller.adapters.http.app_access`), for the webhook token only.
``POST /commands/check`` says whether each of a set of signed commands would be admitted,
deciding none (:mod:`controller.adapters.http.command_check_routes`).

``POST /webhooks/betteruptime`` and ``POST /webhooks/monitor`` take monitor
webhooks (:mod:`controller.adapters.http.monitor_webhooks`; shapes in
:mod:`controller.integrations.monitors`). They answer 401 without
the token, 403 when no token is configured, 415 for a body that is not
``application/json``, 413 over 64 KiB, 408 for a body slower than
``http.body_timeout_seconds``, 422 with the reason for a payload they cannot
read, 202 when accepted, 200 for a redelivery of an incident already accepted
(nothing changes), 503 when the signal could not be published and 500 for
anything unforeseen, so the sender retries. On any path, an error of the
store or the broker is a 503 whose ``reason`` is the readiness check's (which
dependency, at which address, under which setting), not a bare 500. Every answer names its reason in
``error`` or ``reason``, and is counted in ``rollout_webhooks_total`` by
source and outcome.
A monitor no flag is mapped to (``engine.monitors``) is a 404 naming it.

The server is bounded against slow and greedy clients: see :class:`HttpServer`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import orjson
import structlog
from aiohttp import web

from controller.adapters.http.app_access import AppAccess, KeyListRoute
from controller.adapters.http.command_check_routes import CommandCheckRoute
from controller.adapters.http.event_intake import EventIntakeRoutes
from controller.adapters.http.holdout_routes import HoldoutRoutes
from controller.adapters.http.listening import BusyAnswer, Listener
from controller.adapters.http.monitor_webhooks import (
    MAX_WEBHOOK_BYTES,
    MonitorSink,
    MonitorWebhookRoutes,
)
from controller.adapters.http.pipeline_routes import PipelineRoutes
from controller.adapters.http.read_routes import (
    FlagListRoute,
    HistorySource,
    RolloutRoutes,
    StatusSource,
)
from controller.adapters.http.read_snapshot import BodySource
from controller.adapters.http.segment_routes import SegmentRoutes
from controller.adapters.http.web_console import ConsoleRoutes, ConsoleSource
from controller.core.common import BrokerError, StoreError
from controller.core.reading import FlagStates
from controller.core.release import SINGLE, Environments
from controller.settings import HttpSettings

Readiness = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
FlagStateSource = Callable[[], Awaitable[FlagStates]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_HEADERS = 64
BUSY_LINGER = 1.0
WORDING_SECONDS = 0.25
"""How long a 503 for a failed dependency waits for the readiness check to word its reason."""
log = structlog.get_logger("controller.http")


class Mountable(Protocol):
    """A part of the server that adds its own routes."""

    def add_to(self, router: web.UrlDispatcher) -> None: ...


class Closing(Mountable, Protocol):
    """A part that holds requests open (OFREP's event streams): closed as the server stops.

    The OFREP and OTLP routes are their own wings, which stand on this one (app
    access, the event intake), so the server knows them by these shapes only.
    """

    async def close(self) -> None: ...


class HttpServer(Listener):
    """aiohttp application behind ``async with``; binds ``host:port``.

    Limits come from ``limits`` (an :class:`HttpSettings`; its host, port and
    token are not read from it). aiohttp 3.14 bounds header lines, fields and
    counts (``max_line_size``, ``max_field_size``, ``max_headers``) but has no
    timeout for reading a request, nor a connection limit, so:

    * the request line and headers: aiohttp's keep-alive timer is armed when a
      connection opens and again after every response, and when it fires it
      closes the connection if the handler is still waiting for a complete
      request head. With ``keepalive_timeout`` set to
      ``header_timeout_seconds`` that timer is the header deadline, for the
      first request and every later one on the connection (and an idle
      keep-alive connection closes after the same time);
    * the body: the webhook and event intake handlers read it under ``body_timeout_seconds``
      (408 past it), and aiohttp drains an unread body for at most
      ``lingering_time``, set to the same value, before it closes;
    * connections: the listening socket's protocol factory answers 503 and
      closes when ``max_connections`` are already open, so slow clients
      cannot pile up between their deadlines;
    * no body is inflated by the server (``auto_decompress`` off, below).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        readiness: Readiness,
        flags: FlagStateSource,
        metrics: Callable[[], bytes],
        metrics_content_type: str,
        rollouts: StatusSource | None = None,
        history: HistorySource | None = None,
        console: ConsoleSource | None = None,
        monitors: MonitorSink | None = None,
        webhook_token: str | None = None,
        limits: HttpSettings | None = None,
        ofrep: Closing | None = None,
        intake: EventIntakeRoutes | None = None,
        otlp: Mountable | None = None,
        segments: SegmentRoutes | None = None,
        app_keys: KeyListRoute | None = None,
        pipelines: PipelineRoutes | None = None,
        holdouts: HoldoutRoutes | None = None,
        command_check: CommandCheckRoute | None = None,
        flag_list: BodySource | None = None,
        rollout_list: BodySource | None = None,
        count_reads_limited: Callable[[], None] | None = None,
        access: AppAccess | None = None,
        environments: Callable[[], Environments] = lambda: SINGLE,
    ) -> None:
        """``flag_list``, ``rollout_list``: the lists' JSON, built off the event loop (else from
        ``flags``, ``rollouts``). ``access``: the apps' keys, which ``/flags`` wants (scope
        ``evaluate``) unless ``limits.public_flags``; one bound to an environment reads its own."""
        self._readiness, self._flags = readiness, flags
        self._metrics, self._metrics_type = metrics, metrics_content_type
        self._limits = limits or HttpSettings()
        self._busy: set[BusyAnswer] = set()
        app = web.Application(
            client_max_size=MAX_WEBHOOK_BYTES, middlewares=[self._dependency_down]
        )
        self._add_own_routes(app.router, monitors, webhook_token)
        self.flag_list = self._flag_list_route(flag_list, webhook_token, access, environments)
        self.rollouts = self._rollout_routes(
            rollouts,
            history,
            rollout_list,
            webhook_token,
            count_reads_limited,
            access=access,
            environments=environments,
        )
        pages = _console_routes(console, webhook_token, host, self._limits)
        served = (self.flag_list, self.rollouts, pages, ofrep, intake, otlp, segments, app_keys)
        _mount(app.router, (*served, pipelines, holdouts, command_check))
        if ofrep is not None:
            app.on_shutdown.append(lambda _app: ofrep.close())  # open event streams end
        runner = web.AppRunner(app, access_log=None, **_handler_args(self._limits))
        super().__init__(host=host, port=port, runner=runner)

    def _add_own_routes(
        self, router: web.UrlDispatcher, monitors: MonitorSink | None, token: str | None
    ) -> None:
        """Health, readiness, metrics and the monitor webhooks: the routes served here."""
        router.add_get("/healthz", self._healthz)
        router.add_get("/readyz", self._readyz)
        router.add_get("/metrics", self._metrics_page)
        MonitorWebhookRoutes(monitors, token=token, limits=self._limits).add_to(router)

    def _flag_list_route(
        self,
        listing: BodySource | None,
        token: str | None,
        access: AppAccess | None,
        environments: Callable[[], Environments],
    ) -> FlagListRoute:
        """``/flags``: ``listing``'s JSON, else built from the flags' states here."""
        return FlagListRoute(
            listing or self._flag_list,
            max_age=self._limits.reads_max_age_seconds,
            access=access,
            public=self._limits.public_flags,
            operator_token=token,
            environments=environments,
        )

    def _rollout_routes(
        self,
        status: StatusSource | None,
        history: HistorySource | None,
        listing: BodySource | None,
        token: str | None,
        count_limited: Callable[[], None] | None,
        *,
        access: AppAccess | None,
        environments: Callable[[], Environments],
    ) -> RolloutRoutes | None:
        """``/rollouts``, ``/rollouts/{flag}``, its history and verdict; none without
        ``status``. ``access``: the apps' keys, of which those of scope ``verdicts`` read
        verdicts (of the one of ``environments`` a key is bound to)."""
        if status is None:
            return None
        return RolloutRoutes(
            status=status,
            history=history,
            listing=listing,
            max_age=self._limits.reads_max_age_seconds,
            token=token,
            requests_per_second=self._limits.reads_per_second,
            count_limited=count_limited,
            access=access,
            environments=environments,
        )

    def _connection(self) -> asyncio.BaseProtocol:
        """A protocol for one new connection: aiohttp's, or a 503 past the limit."""
        server = self._server()
        limit = self._limits.max_connections
        if len(server.connections) < limit:
            return server()
        # Refused connections linger a moment too, so they are bounded as well.
        linger = BUSY_LINGER if len(self._busy) < limit else 0
        busy = BusyAnswer(linger=linger, done=self._busy.discard)
        self._busy.add(busy)
        return busy

    @web.middleware
    async def _dependency_down(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A store or broker error is a 503 naming the dependency, not aiohttp's bare 500.

        The readiness check words the reason (which dependency, at which
        address, under which setting); the error itself where it has none, or
        where the check does not answer within :data:`WORDING_SECONDS`: the
        dependency that failed the request (a hung Redis) would hold its 503
        as long again, past the bound the request was refused for.
        """
        try:
            return await handler(request)
        except (StoreError, BrokerError) as exc:
            ready: bool = True
            details: dict[str, object] = {}  # not worded in time: the error's own
            try:
                async with asyncio.timeout(WORDING_SECONDS):
                    ready, details = await self._readiness()
            except TimeoutError:
                pass
            told = details.get("reason") if not ready and details else None
            reason = told if isinstance(told, str) else f"{type(exc).__name__}: {exc}"
            log.warning("dependency_unavailable", path=request.path, reason=reason)
            return _json({"error": "a dependency is unavailable", "reason": reason}, status=503)

    async def _healthz(self, _request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready, details = await self._readiness()
        return _json({"ready": ready, **details}, status=200 if ready else 503)

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        body = self._metrics()
        return web.Response(body=body, headers={"Content-Type": self._metrics_type})

    async def _flag_list(self) -> bytes:
        states = [state.served() for state in (await self._flags()).root]
        return orjson.dumps(states, option=orjson.OPT_SORT_KEYS)


def _console_routes(
    console: ConsoleSource | None, token: str | None, host: str, limits: HttpSettings
) -> ConsoleRoutes | None:
    """The web console, for ``host`` and ``limits.console_hosts``; none without ``console``."""
    if console is None:
        return None
    hosts = tuple(limits.console_hosts)
    return ConsoleRoutes(console, token=token, host=host, allowed_hosts=hosts)


def _mount(router: web.UrlDispatcher, served: Iterable[Mountable | None]) -> None:
    """Add the routes of each part the server was given (None: not served)."""
    for routes in served:
        if routes is not None:
            routes.add_to(router)


def _handler_args(limits: HttpSettings) -> dict[str, Any]:
    """aiohttp's per-connection knobs for ``limits`` (see :class:`HttpServer`)."""
    return {
        "keepalive_timeout": limits.header_timeout_seconds,
        "lingering_time": limits.body_timeout_seconds,
        "max_line_size": limits.max_header_bytes,
        "max_field_size": limits.max_header_bytes,
        "max_headers": MAX_HEADERS,
        "auto_decompress": False,  # else br, zstd: a plain-text 400 before any route
    }


def _json(data: dict[str, Any], *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
