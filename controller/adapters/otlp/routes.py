"""OTLP/HTTP: ``POST /v1/traces`` and ``POST /v1/logs`` on the HTTP intake's server.

An app's OpenTelemetry exporter (or a Collector's ``otlphttp`` exporter)
sends its spans and log records here, as the OTLP specification's HTTP
transport says: a body of ``application/x-protobuf`` (an
``ExportTraceServiceRequest`` or ``ExportLogsServiceRequest``) or
``application/json`` (the same in OTLP/JSON), ``Content-Encoding: gzip`` or
none. What becomes of them, the flag evaluations read and the exposures,
request outcomes and conversions sent to the events topic, is the sink's
(:mod:`controller.daemon.serving.otlp_intake`, docs/otel.md).

The route is the event intake's (:mod:`controller.adapters.http.event_intake`):
the same app keys (scope ``events``) and browser origins, checked before the
body is read; the same bound on the body as sent (``http.intake_max_body_bytes``)
and the same deadline for it (``http.body_timeout_seconds``). The answers:

* ``200`` with an ``Export…ServiceResponse`` in the request's encoding once
  the broker acknowledged every event the export made; its
  ``partial_success`` names how many spans (log records) were not counted
  and why (``rejected_spans``, ``error_message``), each of them also sent to
  the DLQ with its reason; nothing refused: an empty ``partial_success``;
* ``400`` a body that is not an export (not protobuf or JSON of one, a body
  nested too deep) or that cannot be inflated; ``413`` a body over its bound as
  sent, a body that inflates past ``http.otlp_max_decoded_bytes`` (a gzip
  bomb: the inflating stops there), or an export of more than
  ``http.otlp_max_items`` items; ``408`` a body slower than its deadline;
  ``415`` a ``Content-Type`` other than the two, or a ``Content-Encoding``
  other than ``gzip`` and ``identity`` (``br``, ``zstd``, ``deflate``...: the
  server inflates no body itself, :mod:`.inflating`, so every encoding reaches
  this check);
* ``429`` with ``Retry-After`` past the client's rate
  (``http.otlp_items_per_second``, counted in spans or log records received,
  valid or not);
* ``503`` with ``Retry-After`` when the broker did not acknowledge the
  events (or Redis, where they are recorded and the flags read, did not answer): nothing was
  counted; the exporter sends the export again, and each event's id (from
  its trace id, span id and flag) makes the copy count once;
* ``503`` with ``Retry-After`` too when the controller is busy
  (:mod:`.admission`): ``http.otlp_max_in_flight`` exports are being worked
  on and ``http.otlp_max_waiting`` more wait (at once, the body unread), or
  no turn came within half of ``http.otlp_answer_seconds``, or its work
  (decoding, translating, the broker's acknowledgement) was not done by the
  whole of it: that work goes on, and the copy the exporter sends again counts
  once. So every export is answered within ``http.otlp_answer_seconds`` of its
  headers, before its exporter gives up (10 s by default).

An answer other than 200 carries a ``google.rpc.Status`` (``code``,
``message``) in the request's encoding, as OTLP/HTTP says.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import orjson
import structlog
from aiohttp import web

from controller.adapters.http import (
    AppAccess,
    BatchNotSent,
    Handler,
    client_of,
    key_of,
    open_access,
)
from controller.adapters.otlp.admission import Admission, Busy
from controller.adapters.otlp.flat import decode_traces_flat
from controller.adapters.otlp.inflating import BodyTooLarge, GzipInflater, NotGzip
from controller.adapters.otlp.proto import decode_logs_proto, logs_response, traces_response
from controller.core.common import BrokerError, ControllerError, RateLimiter, StoreError
from controller.core.release import DEFAULT_ENVIRONMENT
from controller.core.telemetry import (
    WHOLE_BODY,
    Bounds,
    Logs,
    Refusal,
    Spans,
    decode_logs_json,
    decode_traces_json,
)
from controller.core.trust import Refused, Scope, bound_refusal

Signal = Literal["traces", "logs"]
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ENCODINGS = frozenset({"", "identity", "gzip"})
RETRY_AFTER_SECONDS = 2
log = structlog.get_logger("controller.otlp")


@dataclass(frozen=True, slots=True)
class Taken:
    """What became of an export the sink took: the items not counted, and why in words."""

    rejected: int = 0
    message: str = ""


class OtlpSink(Protocol):
    """Translates a decoded export and sends its events, once the broker acknowledged them
    (:class:`BatchNotSent` when it did not)."""

    async def take(self, client: str, signal: Signal, batch: Spans | Logs) -> Taken: ...
    def count(self, signal: Signal, outcome: str, items: int = 0) -> None: ...


@dataclass(frozen=True, slots=True)
class _Signal:
    name: Signal
    path: str
    items: str
    decode_proto: Callable[[bytes, Bounds], Spans | Logs | Refusal]
    decode_json: Callable[[bytes, Bounds], Spans | Logs | Refusal]
    response: Callable[..., bytes]


SIGNALS = (
    _Signal(
        "traces", "/v1/traces", "spans", decode_traces_flat, decode_traces_json, traces_response
    ),
    _Signal("logs", "/v1/logs", "log records", decode_logs_proto, decode_logs_json, logs_response),
)


class _Refusal(ControllerError):
    """An export answered with an error: status, outcome (the metric's word) and reason."""

    def __init__(self, status: int, outcome: str, reason: str, *, close: bool = False) -> None:
        super().__init__(reason)
        self.status, self.outcome, self.reason, self.close = status, outcome, reason, close
        self.retry_after: int | None = None

    def response(self, json: bool) -> web.Response:
        response = _status(self.status, self.reason, json=json)
        if self.retry_after is not None:
            response.headers["Retry-After"] = str(self.retry_after)
        if self.close:
            response.force_close()
        return response


class OtlpRoutes:
    """``POST /v1/traces`` and ``POST /v1/logs`` over an :class:`OtlpSink`."""

    def __init__(
        self,
        sink: OtlpSink,
        *,
        max_body_bytes: int,
        max_decoded_bytes: int,
        items_per_second: float,
        body_timeout_seconds: float,
        bounds: Bounds,
        access: AppAccess | None = None,
        default_environment: Callable[[], str] = lambda: DEFAULT_ENVIRONMENT,
        admission: Admission | None = None,
        answer_seconds: float = 5.0,
    ) -> None:
        """``default_environment``: the one environment telemetry counts for (its flag keys
        name none), so an app key bound to another is refused. ``admission``: how many
        exports are worked on at once and wait (unbounded without); ``answer_seconds``: how
        long one may take from its body to its answer."""
        self._sink, self._bounds = sink, bounds
        self._default_environment = default_environment
        self._max_body, self._max_decoded = max_body_bytes, max(max_decoded_bytes, max_body_bytes)
        self._limiter = RateLimiter(
            items_per_second, max(items_per_second, bounds.max_items), clock=time.monotonic
        )
        self._body_timeout = body_timeout_seconds
        self._access = access or open_access()
        self._admission = admission or Admission(slots=1 << 30, waiting=0)
        self._answer_seconds = answer_seconds

    def add_to(self, router: web.UrlDispatcher) -> None:
        for signal in SIGNALS:
            render = self._refusal_of(signal.name)
            router.add_post(
                signal.path, self._access.guard(self._handler(signal), Scope.EVENTS, render)
            )
            router.add_route(
                "OPTIONS", signal.path, self._access.preflight_for(Scope.EVENTS, render)
            )

    def _refusal_of(self, signal: Signal) -> Callable[[Refused], web.Response]:
        def render(refused: Refused) -> web.Response:
            """A request refused for its key or origin: counted, answered with the reason."""
            self._sink.count(signal, refused.outcome)
            return _status(refused.status, refused.reason, json=True)

        return render

    def _handler(self, signal: _Signal) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            json = request.content_type != PROTOBUF
            try:
                return await self._accept(request, signal, json=json)
            except _Refusal as refusal:
                self._sink.count(signal.name, refusal.outcome)
                return refusal.response(json)
            except (StoreError, BrokerError) as exc:
                # The flags could not be read (Redis): nothing was counted; the exporter retries.
                self._sink.count(signal.name, "unavailable")
                refused = _Refusal(503, "unavailable", f"not accepted, send it again: {exc}")
                refused.retry_after = RETRY_AFTER_SECONDS
                return refused.response(json)
            except Exception:
                # One export's failure is that export's: answered, counted, logged.
                log.exception("otlp_intake_failed", signal=signal.name)
                self._sink.count(signal.name, "error")
                reason = "the export could not be handled; nothing was counted, retry later"
                return _status(500, reason, json=json)

        return handle

    async def _accept(self, request: web.Request, signal: _Signal, *, json: bool) -> web.Response:
        default = self._default_environment()
        if (wrong := bound_refusal(key_of(request), default)) is not None:
            reason = f"{wrong.reason}: telemetry counts for the default environment ({default})"
            raise _Refusal(403, wrong.outcome, reason)
        if request.content_type not in (PROTOBUF, JSON):
            given = request.content_type[:100]
            reason = f"the body must be {PROTOBUF} or {JSON}, not {given!r}"
            raise _Refusal(415, "unsupported_media_type", reason)
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ENCODINGS:
            reason = f"the body may be sent gzip or identity, not {encoding[:50]!r}"
            raise _Refusal(415, "unsupported_encoding", reason)
        if self._admission.full:  # answered now, the body unread: the flood costs nothing more
            raise _busy("too many exports are waiting", close=True)
        deadline = asyncio.get_running_loop().time() + self._answer_seconds
        raw = await self._body(request, inflated=encoding == "gzip")
        try:
            await self._admission.enter(deadline - self._answer_seconds / 2)
        except Busy as exc:
            wait = f"no turn within {self._answer_seconds / 2:g} s"
            raise _busy(f"too many exports at once ({wait})") from exc
        work = asyncio.ensure_future(self._held(signal, client_of(request), raw, json=json))
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(work)
        except TimeoutError as exc:
            # Answered now; the work goes on, holding its slot, and its events count once
            # whether or not the exporter's copy comes.
            work.add_done_callback(_unanswered)
            reason = f"not done within {self._answer_seconds:g} s"
            raise _busy(f"{reason}; send it again, it counts once") from exc

    async def _held(self, signal: _Signal, client: str, raw: bytes, *, json: bool) -> web.Response:
        try:
            return await self._work(signal, client, raw, json=json)
        finally:
            self._admission.leave()

    async def _work(self, signal: _Signal, client: str, raw: bytes, *, json: bool) -> web.Response:
        """Decode, limit and take one export."""
        decode = signal.decode_json if json else signal.decode_proto
        batch = await asyncio.to_thread(decode, raw, self._bounds)
        if isinstance(batch, Refusal):
            raise _whole(batch, signal)
        items = _items(batch)
        wait = self._limiter.wait(client, max(1, items))
        if wait > 0:
            refused = _Refusal(429, "rate_limited", f"over this client's {signal.items} rate")
            refused.retry_after = math.ceil(wait)
            raise refused
        try:
            taken = await self._sink.take(client, signal.name, batch)
        except BatchNotSent as exc:
            refused = _Refusal(503, "unavailable", f"not accepted, send it again: {exc}")
            refused.retry_after = RETRY_AFTER_SECONDS
            raise refused from exc
        self._sink.count(signal.name, "partial" if taken.rejected else "accepted", items)
        body = signal.response(taken.rejected, taken.message, json=json)
        return web.Response(body=body, content_type=JSON if json else PROTOBUF)

    async def _body(self, request: web.Request, *, inflated: bool) -> bytes:
        """The body as the exporter encoded it: read within the body deadline and the bound
        as sent, and inflated (``gzip``) as it arrives, within the bound once inflated."""
        as_sent = _Refusal(413, "too_large", f"the body is over {self._max_body} bytes", close=True)
        if (request.content_length or 0) > self._max_body:
            raise as_sent
        inflater = GzipInflater(self._max_decoded) if inflated else None
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._body_timeout):
                async for chunk in request.content.iter_any():
                    size += len(chunk)
                    if size > self._max_body:
                        raise as_sent
                    if inflater is None:
                        chunks.append(chunk)
                    else:
                        inflater.feed(chunk)
            return b"".join(chunks) if inflater is None else inflater.inflated()
        except TimeoutError as exc:
            reason = f"the body did not arrive within {self._body_timeout:g} s"
            raise _Refusal(408, "timeout", reason, close=True) from exc
        except BodyTooLarge as exc:
            reason = f"the body inflates past {self._max_decoded} bytes"
            raise _Refusal(413, "too_large", reason, close=True) from exc
        except NotGzip as exc:
            reason = f"the body cannot be inflated: {str(exc).strip()[:200]}"
            raise _Refusal(400, "not_gzip", reason, close=True) from exc


def _unanswered(work: asyncio.Future[web.Response]) -> None:
    """An export answered 503 before its work was done: a failure of that work, logged."""
    failure = None if work.cancelled() else work.exception()
    if failure is not None and not isinstance(failure, _Refusal | ControllerError):
        log.error("otlp_late_export_failed", error=repr(failure)[:300])


def _busy(reason: str, *, close: bool = False) -> _Refusal:
    """503 with ``Retry-After``: the exporter sends the export again later."""
    refused = _Refusal(503, "busy", f"busy, send it again: {reason}", close=close)
    refused.retry_after = RETRY_AFTER_SECONDS
    return refused


def _items(batch: Spans | Logs) -> int:
    """The spans or log records an export held, refused ones included."""
    kept = len(batch.spans) if isinstance(batch, Spans) else len(batch.records)
    return kept + len({r.index for r in batch.refused})


def _whole(refusal: Refusal, signal: _Signal) -> _Refusal:
    """An export refused whole: 413 past the most items, else 400 (not an export)."""
    assert refusal.index == WHOLE_BODY
    if refusal.reason == "oversize":
        return _Refusal(413, "too_many", f"{refusal.detail}; send fewer {signal.items} an export")
    return _Refusal(400, "not_an_export", f"not an OTLP {signal.name} export: {refusal.detail}")


def _status(status: int, message: str, *, json: bool) -> web.Response:
    """A ``google.rpc.Status`` answer in the request's encoding (OTLP/HTTP's failure body)."""
    code = GRPC_CODES.get(status, 2)
    if json:
        body = orjson.dumps({"code": code, "message": message})
        return web.Response(body=body, status=status, content_type=JSON)
    return web.Response(body=_status_proto(code, message), status=status, content_type=PROTOBUF)


GRPC_CODES = {400: 3, 401: 16, 403: 7, 408: 4, 413: 8, 415: 3, 429: 8, 500: 13, 503: 14}
"""gRPC's code for each answer (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE); UNKNOWN for others."""


def _status_proto(code: int, message: str) -> bytes:
    """``google.rpc.Status{code, message}`` in protobuf's wire format (two fields)."""
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)
