"""The daemon's small HTTP server: health, readiness, metrics and flag states.

``/healthz`` answers while the event loop runs; ``/readyz`` is 200 only when
Redis answers and this instance owns events partitions (503 with the reason
otherwise); ``/metrics`` is the Prometheus text format; ``/flags`` lists the
current flag states with an ETag, so pollers get 304 when nothing changed.
``/rollouts`` and ``/rollouts/{flag}`` show each rollout's phase, stage, time
in stage and the gate's current evidence (what ``rolloutctl status`` prints).

``POST /webhooks/betteruptime`` and ``POST /webhooks/monitor`` take monitor
webhooks (shapes in :mod:`controller.core.monitors`). They answer 401 without
the token, 403 when no token is configured, 413 over 64 KiB, 422 with the
reason for a payload they cannot read, 202 when accepted, 200 for a
redelivery of an incident already accepted (nothing changes), 503 when the
signal could not be published, so the sender retries.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, Self

import orjson
from aiohttp import web

from controller.core.errors import ControllerError
from controller.core.monitors import (
    Intake,
    MonitorSignal,
    PayloadError,
    parse_betteruptime,
    parse_generic,
)

Readiness = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
FlagStates = Callable[[], Awaitable[list[dict[str, Any]]]]
RolloutStatus = Callable[[str | None], Awaitable[list[dict[str, Any]]]]
MAX_WEBHOOK_BYTES = 64 * 1024


class MonitorSink(Protocol):
    async def accept(self, signal: MonitorSignal) -> Intake: ...


class HttpServer:
    """aiohttp application behind ``async with``; binds ``host:port``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        readiness: Readiness,
        flags: FlagStates,
        metrics: Callable[[], bytes],
        metrics_content_type: str,
        rollouts: RolloutStatus | None = None,
        monitors: MonitorSink | None = None,
        webhook_token: str | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._readiness, self._flags = readiness, flags
        self._metrics, self._metrics_type = metrics, metrics_content_type
        self._monitors, self._token = monitors, webhook_token
        self._rollouts = rollouts
        app = web.Application(client_max_size=MAX_WEBHOOK_BYTES)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/flags", self._flag_states)
        app.router.add_get("/rollouts", self._rollout_list)
        app.router.add_get("/rollouts/{flag}", self._rollout_one)
        app.router.add_post("/webhooks/betteruptime", self._betteruptime)
        app.router.add_post("/webhooks/monitor", self._generic_monitor)
        self._runner = web.AppRunner(app, access_log=None)

    async def __aenter__(self) -> Self:
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._runner.cleanup()

    async def _healthz(self, _request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready, details = await self._readiness()
        return _json({"ready": ready, **details}, status=200 if ready else 503)

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        body = self._metrics()
        return web.Response(body=body, headers={"Content-Type": self._metrics_type})

    async def _flag_states(self, request: web.Request) -> web.Response:
        body = orjson.dumps(await self._flags(), option=orjson.OPT_SORT_KEYS)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type="application/json", headers={"ETag": etag})

    async def _rollout_list(self, _request: web.Request) -> web.Response:
        if self._rollouts is None:
            return _json({"error": "rollout status is not served here"}, status=404)
        return _json({"rollouts": await self._rollouts(None)})

    async def _rollout_one(self, request: web.Request) -> web.Response:
        flag = request.match_info["flag"]
        found = await self._rollouts(flag) if self._rollouts is not None else []
        if not found:
            return _json({"error": f"no rollout for flag {flag!r}"}, status=404)
        return _json(found[0])

    async def _betteruptime(self, request: web.Request) -> web.Response:
        return await self._webhook(request, parse_betteruptime)

    async def _generic_monitor(self, request: web.Request) -> web.Response:
        delivery = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        return await self._webhook(request, lambda body: parse_generic(body, delivery_id=delivery))

    async def _webhook(
        self, request: web.Request, parse: Callable[[object], MonitorSignal | None]
    ) -> web.Response:
        """Authenticate, parse, then hand the signal to the sink; the status says which."""
        if refusal := self._unauthorized(request):
            return refusal
        signal = await _signal(request, parse)
        if isinstance(signal, web.Response):
            return signal
        assert self._monitors is not None  # checked by _unauthorized
        try:
            intake = await self._monitors.accept(signal)
        except ControllerError as exc:
            return _json({"error": f"not accepted, retry later: {exc}"}, status=503)
        body = {"monitor": signal.monitor, "status": signal.status, "flags": intake.flags}
        if not intake.accepted:
            return _json({**body, "result": "duplicate"})
        return _json({**body, "result": "accepted"}, status=202)

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if self._token is None or self._monitors is None:
            return _json({"error": "webhooks are disabled: set http.webhook_token"}, status=403)
        given = request.query.get("token", "")
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = credentials.strip()
        if not given or not hmac.compare_digest(given.encode(), self._token.encode()):
            return _json({"error": "missing or wrong webhook token"}, status=401)
        return None


async def _signal(
    request: web.Request, parse: Callable[[object], MonitorSignal | None]
) -> MonitorSignal | web.Response:
    """The signal in the request body, or the response that refuses or ignores it."""
    try:
        signal = parse(orjson.loads(await request.read()))
    except orjson.JSONDecodeError:
        return _json({"error": "the body is not JSON"}, status=422)
    except PayloadError as exc:
        return _json({"error": f"unreadable payload: {exc}"}, status=422)
    if signal is None:
        return _json({"status": "ignored", "reason": "only started and resolved count"})
    return signal


def _json(data: dict[str, Any], *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
