"""The monitor webhooks: ``POST /webhooks/betteruptime`` and ``POST /webhooks/monitor``.

Each delivery is authenticated by the webhook token, read within the body
deadline and size limit, parsed (shapes in :mod:`controller.integrations.monitors`)
and handed to the monitors' sink; or refused with a status and a reason. Every
answer is counted by source and outcome. :class:`controller.adapters.http.server.HttpServer`
mounts these routes; its docstring lists the answers.
"""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections.abc import Callable
from typing import Protocol

import orjson
import structlog
from aiohttp import web

from controller.core.common import ControllerError
from controller.integrations.monitors import (
    Intake,
    MonitorSignal,
    PayloadError,
    UnmappedMonitor,
    parse_betteruptime,
    parse_generic,
)
from controller.settings import HttpSettings

Parser = Callable[[object], MonitorSignal | None]
MAX_WEBHOOK_BYTES = 64 * 1024
log = structlog.get_logger("controller.http")


class MonitorSink(Protocol):
    async def accept(self, signal: MonitorSignal) -> Intake: ...
    def count(self, source: str, outcome: str) -> None: ...


class MonitorWebhookRoutes:
    """The two monitor webhooks, for ``monitors`` behind ``token``.

    Without either, every delivery is refused 403 (webhooks disabled). A body
    is read within ``limits.body_timeout_seconds`` and up to
    :data:`MAX_WEBHOOK_BYTES`.
    """

    def __init__(
        self, monitors: MonitorSink | None, *, token: str | None, limits: HttpSettings
    ) -> None:
        self._monitors, self._token, self._limits = monitors, token, limits

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post("/webhooks/betteruptime", self._betteruptime)
        router.add_post("/webhooks/monitor", self._generic_monitor)

    async def _betteruptime(self, request: web.Request) -> web.Response:
        # names a reopen whose payload carries no timestamp telling it apart
        delivery = request.headers.get("X-Request-Id", "").strip() or uuid.uuid4().hex
        return await self._webhook(
            request, "betteruptime", lambda body: parse_betteruptime(body, delivery_id=delivery)
        )

    async def _generic_monitor(self, request: web.Request) -> web.Response:
        # parse_generic bounds the id, so a header of any length is fine here
        delivery = request.headers.get("X-Request-Id", "").strip() or uuid.uuid4().hex
        return await self._webhook(
            request, "monitor", lambda body: parse_generic(body, delivery_id=delivery)
        )

    async def _webhook(self, request: web.Request, source: str, parse: Parser) -> web.Response:
        """Answer one webhook delivery, with a reason, and count what became of it."""
        try:
            response, outcome = await self._deliver(request, parse)
        except _Refused as refusal:
            response, outcome = refusal.response(), refusal.outcome
        except Exception:
            # One delivery's failure is that delivery's: answered, counted, logged.
            log.exception("webhook_failed", source=source)
            reason = "the delivery could not be handled; retry later"
            response, outcome = _json({"error": reason}, status=500), "error"
        if self._monitors is not None:
            self._monitors.count(source, outcome)
        return response

    async def _deliver(self, request: web.Request, parse: Parser) -> tuple[web.Response, str]:
        """Authenticate, read, parse, then hand the signal to the sink; or refuse."""
        sink = self._authorized(request)
        signal = _parsed(parse, await self._json_body(request))
        if signal is None:
            reason = "only started, reopened and resolved count"
            return _json({"status": "ignored", "reason": reason}), "ignored"
        try:
            intake = await sink.accept(signal)
        except PayloadError as exc:
            raise _Refused(422, "invalid", f"unreadable payload: {exc}") from exc
        except UnmappedMonitor as exc:
            raise _Refused(404, "unmapped", str(exc)) from exc
        except ControllerError as exc:
            raise _Refused(503, "unavailable", f"not accepted, retry later: {exc}") from exc
        body = {"monitor": signal.monitor, "status": signal.status, "flags": intake.flags}
        if not intake.accepted:
            reason = "this incident's status was already accepted"
            return _json({**body, "result": "duplicate", "reason": reason}), "duplicate"
        reason = "published to the monitors topic"
        return _json({**body, "result": "accepted", "reason": reason}, status=202), "accepted"

    def _authorized(self, request: web.Request) -> MonitorSink:
        if self._token is None or self._monitors is None:
            raise _Refused(403, "disabled", "webhooks are disabled: set http.webhook_token")
        given = request.query.get("token", "")
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = credentials.strip()
        if not given or not hmac.compare_digest(given.encode(), self._token.encode()):
            raise _Refused(401, "unauthorized", "missing or wrong webhook token")
        return self._monitors

    async def _json_body(self, request: web.Request) -> object:
        """The decoded JSON body, read within the body deadline and size limit."""
        if request.content_type != "application/json":
            given = request.content_type[:100]
            reason = f"the body must be application/json, not {given!r}"
            raise _Refused(415, "unsupported_media_type", reason)
        too_large = _Refused(413, "too_large", f"the body is over {MAX_WEBHOOK_BYTES} bytes")
        if (request.content_length or 0) > MAX_WEBHOOK_BYTES:
            raise too_large
        timeout = self._limits.body_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                raw = await request.read()
        except TimeoutError as exc:
            reason = f"the body did not arrive within {timeout:g} s"
            raise _Refused(408, "timeout", reason, close=True) from exc
        except web.HTTPRequestEntityTooLarge as exc:
            raise too_large from exc
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _Refused(422, "not_json", "the body is not JSON") from exc


class _Refused(ControllerError):
    """A webhook delivery refused with a status, a counted outcome and a reason."""

    def __init__(self, status: int, outcome: str, reason: str, *, close: bool = False) -> None:
        super().__init__(reason)
        self.status, self.outcome, self.reason, self.close = status, outcome, reason, close

    def response(self) -> web.Response:
        response = _json({"error": self.reason}, status=self.status)
        if self.close:
            response.force_close()
        return response


def _parsed(parse: Parser, body: object) -> MonitorSignal | None:
    try:
        return parse(body)
    except PayloadError as exc:
        raise _Refused(422, "invalid", f"unreadable payload: {exc}") from exc


def _json(data: dict[str, object], *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
