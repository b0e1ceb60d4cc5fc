"""The HTTP event intake: apps that cannot speak Kafka send their events here.

``POST /v1/events`` takes a JSON object ``{"events": [...]}`` whose events are
the events of the events topic (exposures, request outcomes, conversions, as
``schemas/`` defines them), at most ``http.intake_max_events`` of them in a
body of at most ``http.intake_max_body_bytes``. Each event is validated by
:class:`~controller.core.wire.decoding.EventDecoder`, the decoder ingest runs, with
ingest's ``max_event_bytes``, on the very bytes that will be produced: the
edge accepts exactly what ingest counts. A batch is all or nothing: one
invalid event refuses the whole batch (400), with a reason per refused index.

The answers, each a JSON object with a reason:

* ``202`` once the broker acknowledged every event sent (``accepted``: the
  batch's events; ``sent``: those sent now; ``duplicates``: the ids known to
  have been accepted before, with the same content, which were not sent
  again; ``duplicate``: true when that is every event). Knowing duplicates
  here is best effort; each event id is counted once by ingest's flush
  whatever this answer knew (see :mod:`controller.daemon.serving.event_intake`);
* ``400`` a body that is not a batch (not JSON, nested too deep, no
  ``events`` list, an empty batch, an event id repeated in the batch) or
  that holds an invalid event (``errors``: index and reason, the first 20);
* ``409`` an event whose id was accepted before with other content
  (``changed``: those ids); nothing of the batch was sent. An id names one
  event: give a changed event a new id;
* ``408`` a body slower than ``http.body_timeout_seconds``; ``413`` a body
  or a batch over its bound; ``415`` a body that is not ``application/json``, or
  sent with a ``Content-Encoding`` (batches are small; the server inflates none);
* ``429`` with ``Retry-After`` past the client's rate
  (``http.intake_events_per_second``, counted in events received, valid or
  not, so a client flooding invalid batches is limited like any other);
* ``503`` with ``Retry-After`` when the broker did not acknowledge the batch
  (or Redis, where retries are recorded, did not answer): nothing was
  counted, send the same batch again.

A retried or re-batched event is counted once: see :mod:`controller.daemon.serving.event_intake`.
A large body's checks run on a thread (:data:`OFF_LOOP_BYTES`), and the batch
is sent from the intake's own (:mod:`controller.daemon.serving.intake_worker`), so a
flood of batches never holds the event loop a kill's decision runs on.
App keys (scope ``events``) and browser origins are checked before the body is
read (:mod:`controller.adapters.http.app_access`: 401 or 403 with the reason,
``OPTIONS`` answers a CORS preflight); the client whose rate is limited is the
request's key, or its remote address where it sent none
(:meth:`EventIntakeRoutes.client_key`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec
import orjson
import structlog
from aiohttp import web

from controller.adapters.http.app_access import AppAccess, client_of, key_of, open_access
from controller.core.common import ControllerError, RateLimiter, environment_of
from controller.core.release import DEFAULT_ENVIRONMENT
from controller.core.trust import AppKey, Refused, Scope, bound_refusal
from controller.core.wire import (
    MAX_NESTING,
    EventDecoder,
    InEvent,
    Rejection,
    nesting_exceeds,
)

MAX_REPORTED_ERRORS = 20
RETRY_AFTER_SECONDS = 2
OFF_LOOP_BYTES = 16 * 1024
"""A body larger than this is checked (its nesting, its events decoded) on a thread, not on
the event loop: a batch of 500 is some ten milliseconds of it, and six clients sending
such batches back to back would hold a kill's decision for as long each turn."""
_T = TypeVar("_T")
log = structlog.get_logger("controller.event_intake")


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    events: list[msgspec.Raw]


_batch: msgspec.json.Decoder[_Batch] = msgspec.json.Decoder(_Batch)
_BATCH_FAILURES = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)


MAX_NAMED_IDS = 500
"""The most ids an answer names (a batch's most events by default)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """What became of a batch the sink took: its events, and the ids known as sent before."""

    events: int
    duplicates: tuple[str, ...] = ()
    unrecorded: bool = False
    """Sent and acknowledged, but not written to the record of sent events."""

    @property
    def sent(self) -> int:
        return self.events - len(self.duplicates)

    @property
    def duplicate(self) -> bool:
        """Whether every event of the batch was known as sent before."""
        return self.sent == 0


class BatchNotSent(ControllerError):
    """The batch was not sent (the broker or the record of sent events did not answer)."""


class ChangedEvents(ControllerError):
    """Events whose ids were accepted before with other content: the batch is not sent."""

    def __init__(self, ids: Sequence[str]) -> None:
        super().__init__(f"{len(ids)} events reuse the id of an event accepted before")
        self.ids = list(ids)


class EventSink(Protocol):
    """Sends a validated batch to the events topic, once per batch."""

    async def send(self, client: str, events: Sequence[tuple[InEvent, bytes]]) -> Accepted: ...
    def count(self, outcome: str, events: int) -> None: ...


class _Refused(ControllerError):
    def __init__(self, status: int, outcome: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status, self.outcome, self.reason, self.extra = status, outcome, reason, extra
        self.close = False
        self.retry_after: int | None = None

    def response(self) -> web.Response:
        response = _json({"error": self.reason, **self.extra}, status=self.status)
        if self.retry_after is not None:
            response.headers["Retry-After"] = str(self.retry_after)
        if self.close:
            response.force_close()
        return response


class EventIntakeRoutes:
    """``POST /v1/events`` over an :class:`EventSink`."""

    def __init__(
        self,
        sink: EventSink,
        *,
        max_body_bytes: int,
        max_events: int,
        max_event_bytes: int,
        events_per_second: float,
        body_timeout_seconds: float,
        access: AppAccess | None = None,
        default_environment: Callable[[], str] = lambda: DEFAULT_ENVIRONMENT,
    ) -> None:
        """``default_environment``: the environment of a flag key that names none, against
        which the events of an app key bound to one environment are checked."""
        self._sink, self._max_body, self._max_events = sink, max_body_bytes, max_events
        self._default_environment = default_environment
        self._decoder = EventDecoder(max_bytes=max_event_bytes)
        self._limiter = RateLimiter(
            events_per_second, max(events_per_second, max_events), clock=time.monotonic
        )
        self._body_timeout = body_timeout_seconds
        self._access = access or open_access()

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/events", self._access.guard(self._post, Scope.EVENTS, self._refusal))
        router.add_route(
            "OPTIONS", "/v1/events", self._access.preflight_for(Scope.EVENTS, self._refusal)
        )

    def _refusal(self, refused: Refused) -> web.Response:
        """A request refused for its key or origin: counted, answered with the reason."""
        self._sink.count(refused.outcome, 0)
        return _json({"error": refused.reason}, status=refused.status)

    def client_key(self, request: web.Request) -> str:
        """Whom a request's rate is counted for: its app key (admitted before this is asked),
        else its remote address."""
        return client_of(request)

    async def _post(self, request: web.Request) -> web.Response:
        try:
            return await self._accept(request)
        except _Refused as refusal:
            self._sink.count(refusal.outcome, 0)
            return refusal.response()
        except Exception:
            # One request's failure is that request's: answered, counted, logged.
            log.exception("event_intake_failed")
            self._sink.count("error", 0)
            reason = "the batch could not be handled; nothing was counted, retry later"
            return _json({"error": reason}, status=500)

    async def _accept(self, request: web.Request) -> web.Response:
        client = self.client_key(request)
        body = await self._body(request)
        off_loop = len(body) > OFF_LOOP_BYTES
        raws = await _run(off_loop, _batch_of, body, self._max_events)
        # Charged before validation: a client sending invalid batches is limited too.
        wait = self._limiter.wait(client, len(raws))
        if wait > 0:
            refused = _Refused(429, "rate_limited", "over this client's event rate; retry later")
            refused.retry_after = math.ceil(wait)
            raise refused
        events = await _run(off_loop, self._validated, raws, key_of(request))
        try:
            accepted = await self._sink.send(client, events)
        except BatchNotSent as exc:
            refused = _Refused(503, "unavailable", f"not accepted, send it again: {exc}")
            refused.retry_after = RETRY_AFTER_SECONDS
            raise refused from exc
        except ChangedEvents as exc:
            reason = (
                f"{exc}: an id names one event; nothing was sent, give a changed event a new id"
            )
            raise _Refused(409, "changed", reason, changed=exc.ids[:MAX_NAMED_IDS]) from exc
        self._sink.count("duplicate" if accepted.duplicate else "accepted", accepted.sent)
        return _json(_answer(accepted), status=202)

    def _validated(self, raws: list[bytes], key: AppKey | None) -> list[tuple[InEvent, bytes]]:
        """Every event decoded as ingest decodes it, or a 400 naming each refused index (an
        event of a flag in another environment than its key's too)."""
        events: list[tuple[InEvent, bytes]] = []
        errors: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        default = self._default_environment()
        for index, raw in enumerate(raws):
            found = self._decoder.decode(raw)
            if isinstance(found, Rejection):
                errors.append(
                    {"index": index, "reason": found.reason.value, "detail": found.detail}
                )
            elif (wrong := bound_refusal(key, environment_of(found.flag, default))) is not None:
                errors.append({"index": index, "reason": wrong.outcome, "detail": wrong.reason})
            elif (first := seen.setdefault(found.id, index)) != index:
                detail = f"the id of event {first} again: an event is sent once"
                errors.append({"index": index, "reason": "repeated_id", "detail": detail})
            else:
                events.append((found, raw))
        if errors:
            reason = f"{len(errors)} of {len(raws)} events are invalid; nothing was counted"
            raise _Refused(400, "invalid", reason, errors=errors[:MAX_REPORTED_ERRORS])
        return events

    async def _body(self, request: web.Request) -> bytes:
        """The body, read within the body deadline and ``max_body_bytes``."""
        if request.content_type != "application/json":
            given = request.content_type[:100]
            reason = f"the body must be application/json, not {given!r}"
            raise _Refused(415, "unsupported_media_type", reason)
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            reason = f"the body must be sent without a Content-Encoding, not {encoding[:50]!r}"
            raise _Refused(415, "unsupported_encoding", reason)
        too_large = _Refused(413, "too_large", f"the body is over {self._max_body} bytes")
        too_large.close = True
        if (request.content_length or 0) > self._max_body:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._body_timeout):
                # Read past aiohttp's client_max_size, which bounds the other routes.
                async for chunk in request.content.iter_any():
                    size += len(chunk)
                    if size > self._max_body:
                        raise too_large
                    chunks.append(chunk)
        except TimeoutError as exc:
            reason = f"the body did not arrive within {self._body_timeout:g} s"
            refused = _Refused(408, "timeout", reason)
            refused.close = True
            raise refused from exc
        return b"".join(chunks)


async def _run(off_loop: bool, work: Callable[..., _T], *args: Any) -> _T:
    """``work(*args)``, on a thread when ``off_loop`` (a large body's checks), else here."""
    return await asyncio.to_thread(work, *args) if off_loop else work(*args)


def _batch_of(body: bytes, max_events: int) -> list[bytes]:
    """The events of a batch body, each as the bytes sent; or a 400 or 413 saying why not.

    The decoder bounds its own depth (a body past it fails), so the byte scan of the
    body's nesting runs only on a body that failed, to say why; an event nested deeper
    than an event may be is refused by the event decoder, naming its index."""
    try:
        batch = _batch.decode(body)
    except _BATCH_FAILURES as exc:
        if nesting_exceeds(body, MAX_NESTING + 2):
            reason = f"the body is nested deeper than {MAX_NESTING + 2} levels; an event is flat"
            raise _Refused(400, "too_deep", reason) from exc
        detail = str(exc)[:200]
        raise _Refused(
            400, "not_a_batch", f'the body must be {{"events": [...]}}: {detail}'
        ) from exc
    if not batch.events:
        raise _Refused(400, "empty", "the batch holds no events")
    if len(batch.events) > max_events:
        reason = f"the batch holds {len(batch.events)} events; at most {max_events} per batch"
        raise _Refused(413, "too_many", reason)
    return [bytes(raw) for raw in batch.events]


def _answer(accepted: Accepted) -> dict[str, Any]:
    """A 202's body: what was sent now, and the ids known as accepted before."""
    if accepted.duplicate:
        reason = "every event was accepted before; nothing was sent again"
    elif accepted.duplicates:
        reason = (
            f"acknowledged by the broker; {len(accepted.duplicates)} events were accepted"
            " before and not sent again"
        )
    else:
        reason = "acknowledged by the broker"
    return {
        "accepted": accepted.events,
        "sent": accepted.sent,
        "duplicates": list(accepted.duplicates[:MAX_NAMED_IDS]),
        "duplicate": accepted.duplicate,
        "reason": reason,
    }


def _json(data: dict[str, Any], *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
