"""The OpenFeature Remote Evaluation Protocol (OFREP) on the daemon's HTTP server.

Apps in any language evaluate flags through OpenFeature's OFREP providers
(``openfeature-provider-ofrep`` for Python, ``@openfeature/ofrep-provider``
for Node, and those for the web, Go, Java...), per the published OpenAPI
document of OFREP 0.3.0:

* ``POST /ofrep/v1/evaluate/flags/{key}``: one flag for the body's
  ``context``; 200 with ``key``, ``value``, ``reason``, ``variant`` and
  ``metadata``; 404 ``FLAG_NOT_FOUND``; 400 with ``TARGETING_KEY_MISSING``,
  ``INVALID_CONTEXT`` or ``PARSE_ERROR``;
* ``POST /ofrep/v1/evaluate/flags``: every flag for one context, with an
  ``ETag`` made of the flag states' and segments' versions and the context, and 304 when a
  request's ``If-None-Match`` names it (nothing changed for that context; ``*``
  names no ETag, so it gets the flags);
* ``GET /ofrep/v1/configuration``: what the server supports (value types, polling). This
  project's extension, not OFREP: the endpoint was removed from OFREP before 1.0; it is
  kept in the drafts' shape for clients written against them;
* ``GET /ofrep/v1/events``: the environment's event stream, which each bulk answer's
  ``eventStreams`` announces (:mod:`controller.adapters.ofrep.streams`).

Each path also answers under ``/env/{environment}`` (``/env/staging/ofrep/v1/...``):
the flags of that environment, by the keys the app knows them by (``checkout``),
evaluated from the environment's flag states (``checkout@staging``, which
``metadata.flagKey`` names for the app's events); without the prefix, the
default environment's. A flag key may name its environment instead
(``checkout@staging``), and is evaluated there; a key and a path naming two
is a 404. An environment the controller does not serve is a 404 naming the
ones it does (``FLAG_NOT_FOUND`` for one flag, as OFREP's 404 always is). An
app key bound to one environment is refused (403) every other, whichever way a
request names it, the configuration included.

Every evaluation is :func:`controller.core.wire.evaluation.evaluate`, the function
the SDK answers from, so an OFREP app and an SDK app serve a unit the same
arm. The unit is the context's ``targetingKey``; the value is the arm's (its
declared one, else treatment is ``true``), the variant the arm's name, and
``metadata`` carries ``flag_version`` and ``rollout_id`` (and ``stage``) for
exposures, and ``version``, the flag version as a string, which OpenFeature's
OpenTelemetry hooks put on their evaluation events as ``feature_flag.version``.
Reasons are those OFREP lists (``SPLIT``, ``STATIC``, ``TARGETING_MATCH``,
``DISABLED``); a flag that buckets nobody (disabled, static, unknown, or
targeted with no ring splitting its audience) answers without a targeting key,
and one that does answers ``TARGETING_KEY_MISSING`` alone, in a bulk answer
beside the others.

The flag states and segments are held in memory, not read per evaluation
(:mod:`controller.adapters.ofrep.snapshot`).

Bodies are bounded: over :data:`MAX_BODY_BYTES` is a 413, a body slower than
``body_timeout_seconds`` a 408, a body that is not JSON a 400
``PARSE_ERROR``, and a context nested deeper than 8 levels,
with more than 1,000 values, or holding a string that
is not valid Unicode or a number beyond a double's range a 400
``INVALID_CONTEXT`` (:mod:`controller.adapters.ofrep.context`), each with
the reason in ``errorDetails``. App keys
(scope ``evaluate``) and browser origins are checked before the body is read
(:mod:`controller.adapters.http.app_access`): 401 or 403 as OFREP specifies, with
the reason in ``errorDetails``; ``OPTIONS`` answers a CORS preflight.

Each client (its app key, else its remote address) may make
``http.ofrep_requests_per_second`` evaluation requests a second (a token
bucket of :mod:`controller.core.common.rates`, a second's worth, at least one, at once); past it
the request is answered 429 with ``Retry-After`` (whole seconds) and OFREP's
error body, before its body is read. A bulk request counts as one, like a
single-flag one, whatever the number of flags: it is one pass over one
snapshot, and what a client-side provider polls, so its cost to the client
must not grow with the flags the controller holds. A revalidation answered
304 counts too; ``GET /ofrep/v1/configuration`` does not.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import structlog
from aiohttp import web

from controller.adapters.http import AppAccess, client_of, key_of, open_access
from controller.adapters.ofrep.context import (
    OfrepFailure,
    checked_unit,
    context_of,
    decoded,
)
from controller.adapters.ofrep.snapshot import (
    MAX_AGE_SECONDS,
    FlagStateSource,
    SegmentSource,
    SnapshotCache,
)
from controller.adapters.ofrep.stream_route import (
    NO_STREAMS,
    STREAM_PATH,
    StreamBounds,
    announced,
    behind,
    opened,
    streamer,
    token_judge,
)
from controller.adapters.ofrep.streams import Peer, StreamHub, StreamLimit
from controller.core.common import RateLimiter, scoped, split
from controller.core.release import SINGLE, Environments
from controller.core.trust import AppKey, Refused, Scope, bound_refusal, request_environment
from controller.core.wire import ErrorCode, Evaluation, evaluate

ENVIRONMENT_PREFIX = "/env/{environment}"
"""Before an OFREP path: evaluate in that environment (none: the default one)."""
MAX_BODY_BYTES = 16 * 1024
"""The largest evaluation request read; a context is a unit and a few attributes."""
POLLING_INTERVAL_MS = 1000
log = structlog.get_logger("controller.ofrep")


class OfrepRoutes:
    """The OFREP endpoints over a :class:`SnapshotCache` of ``states``."""

    def __init__(
        self,
        states: FlagStateSource,
        *,
        body_timeout_seconds: float,
        max_age_seconds: float = MAX_AGE_SECONDS,
        access: AppAccess | None = None,
        segments: SegmentSource | None = None,
        requests_per_second: float | None = None,
        count_limited: Callable[[str], None] | None = None,
        environments: Environments | Callable[[], Environments] = SINGLE,
        streams: StreamBounds = NO_STREAMS,
    ) -> None:
        """``requests_per_second``: each client's evaluation requests a second (None: no
        limit); ``count_limited`` is told the route (``one``, ``bulk``, ``stream``) of each
        request refused for its rate. ``streams``: how many event streams may be open."""
        self.snapshots = SnapshotCache(states, segments=segments, max_age=max_age_seconds)
        self.streams = StreamHub(self.snapshots, **streams.hub_args())
        self._body_timeout = body_timeout_seconds
        self._access = access or open_access()
        self._limiter = (
            None
            if requests_per_second is None
            else RateLimiter(
                requests_per_second, max(1.0, requests_per_second), clock=time.monotonic
            )
        )
        self._count_limited = count_limited or (lambda _route: None)
        self._served = environments if callable(environments) else (lambda: environments)

    def add_to(self, router: web.UrlDispatcher) -> None:
        routes = (
            ("POST", "/ofrep/v1/evaluate/flags/{key}", self._one),
            ("POST", "/ofrep/v1/evaluate/flags", self._bulk),
            ("GET", "/ofrep/v1/configuration", self._configuration),
            ("GET", STREAM_PATH, self._stream),
        )
        preflight = self._access.preflight_for(Scope.EVALUATE, refusal)
        by_token = token_judge(self._served, self._access.policy)
        for method, path, handler in routes:
            token = by_token if handler == self._stream else None
            for prefix in ("", ENVIRONMENT_PREFIX):  # /env/staging/ofrep/v1/...: one environment
                guarded = self._access.guard(handler, Scope.EVALUATE, refusal, alternative=token)
                router.add_route(method, prefix + path, guarded)
                router.add_route("OPTIONS", prefix + path, preflight)

    async def close(self) -> None:
        """End the open event streams: the server is stopping."""
        await self.streams.shut()

    @property
    def _environments(self) -> Environments:
        """The environments served now (they reload with the operator keys on SIGHUP)."""
        return self._served()

    def _environment(self, request: web.Request, in_key: str | None = None) -> str:
        """The environment the request's path names (or the flag key, ``checkout@staging``),
        else its app key's, else the default; a 404 for one not served or for a path and a
        flag key naming two, a 403 for one its app key is not bound to."""
        key = key_of(request)
        named = [n for n in (request.match_info.get("environment"), in_key) if n is not None]
        for each in named:
            self._admitted(key, each)
        if len(set(named)) > 1:
            raise OfrepFailure(404, ErrorCode.FLAG_NOT_FOUND, _two_environments(*named))
        environment = self._environments.of(request_environment(key, next(iter(named), None)))
        self._admitted(key, environment)
        return environment

    def _admitted(self, key: AppKey | None, environment: str) -> None:
        """A 404 for an environment not served, a 403 for one ``key`` is not bound to."""
        unknown = self._environments.unknown(environment)
        if unknown is not None:
            raise OfrepFailure(404, ErrorCode.GENERAL, unknown)
        if (refused := bound_refusal(key, environment)) is not None:
            raise OfrepFailure(403, ErrorCode.GENERAL, refused.reason)

    def _stored(self, request: web.Request, key: str) -> str:
        """The stored key of the flag an evaluation names: in the environment its path or its
        key names (``checkout@staging`` names staging), checked against the app key's; one
        not served is the flag's ``FLAG_NOT_FOUND``."""
        flag, in_key = split(key)
        try:
            environment = self._environment(request, in_key)
        except OfrepFailure as failure:
            if failure.status != 404:
                raise
            # OFREP's 404 for one flag is FLAG_NOT_FOUND: its document allows no other code.
            raise OfrepFailure(404, ErrorCode.FLAG_NOT_FOUND, failure.details) from None
        return scoped(flag, environment, self._environments.default)

    async def _one(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        try:
            self._within_rate(request, "one")
            stored = self._stored(request, key)
            unit, attributes = context_of(await self._body(request))
        except OfrepFailure as failure:
            return failure.response(key)
        snapshot = await self.snapshots.get()
        held = snapshot.states  # where prerequisites are looked up
        found = evaluate(stored, held.get(stored), unit, attributes, snapshot.segments, states=held)
        if found.error is None:
            return _json(_success(found, key))
        return _json(
            _failure(found, key), status=404 if found.error is ErrorCode.FLAG_NOT_FOUND else 400
        )

    async def _bulk(self, request: web.Request) -> web.Response:
        try:
            self._within_rate(request, "bulk")
            environment = self._environment(request)
            unit, attributes = context_of(await self._body(request))
            unit = checked_unit(unit)
        except OfrepFailure as failure:
            return failure.response(None)
        place = self._place(environment)
        snapshot = await self.snapshots.get()
        if behind(snapshot, place, request.query.get("flagConfigEtag")):
            snapshot = await self.snapshots.refresh()  # a stream told of a newer tag
        context = orjson.dumps([unit, attributes, environment], option=orjson.OPT_SORT_KEYS)
        etag = '"' + hashlib.sha256(snapshot.tag + context).hexdigest()[:32] + '"'
        if _matches(request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers={"ETag": etag})
        flags = []
        default = self._environments.default
        held = snapshot.states
        for stored, state in held.items():
            flag, where = split(stored)
            if (where or default) != environment:
                continue
            found = evaluate(stored, state, unit, attributes, snapshot.segments, states=held)
            flags.append(_success(found, flag) if found.error is None else _failure(found, flag))
        tag = snapshot.tag_of(place)
        streams = announced(request, environment, tag, max_streams=self.streams.max_streams)
        return _json({"flags": flags, **streams}, headers={"ETag": etag})

    def _place(self, environment: str) -> str | None:
        """Where ``environment``'s flags are stored: no suffix for the default one."""
        return None if environment == self._environments.default else environment

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """``GET /ofrep/v1/events``: the environment's event stream (see :mod:`.streams`)."""
        try:
            self._within_rate(request, "stream")
            place = self._place(self._environment(request))
        except OfrepFailure as failure:
            return failure.response(None)
        seen = request.headers.get("Last-Event-ID") or request.query.get("flagConfigEtag")
        current = (await self.snapshots.get()).tag_of(place)
        peer = Peer.of(request, write_seconds=self.streams.write_seconds)
        if peer is None:
            return web.Response(status=499, reason="Client Closed Request")  # nobody reads it
        try:
            stream = self.streams.open(
                place, streamer(request), (seen or current)[:64], current, peer
            )
        except StreamLimit as exc:
            limited = OfrepFailure(429, ErrorCode.GENERAL, str(exc))
            limited.retry_after = 1
            return limited.response(None)
        response = opened(request, self._access.policy.origins)
        try:
            await response.prepare(request)
            await self.streams.serve(stream, response)
        except TimeoutError:
            peer.cut()  # it stopped reading: what it has not taken is dropped with it
        except ConnectionError:
            pass  # the client went
        finally:
            self.streams.close(stream)
        return response

    async def _configuration(self, request: web.Request) -> web.Response:
        try:
            environment = self._environment(request)
        except OfrepFailure as failure:
            return failure.response(None)
        streams = announced(request, environment, None, max_streams=self.streams.max_streams)
        body = orjson.dumps(CONFIGURATION | streams)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if _matches(request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type="application/json", headers={"ETag": etag})

    def _within_rate(self, request: web.Request, route: str) -> None:
        """Spend one of the client's requests, or a 429 saying when to come back."""
        wait = 0.0 if self._limiter is None else self._limiter.wait(client_of(request))
        if wait > 0:
            self._count_limited(route)
            reason = "over this client's OFREP request rate; retry after Retry-After seconds"
            limited = OfrepFailure(429, ErrorCode.GENERAL, reason)
            limited.retry_after = max(1, math.ceil(wait))
            raise limited

    async def _body(self, request: web.Request) -> object:
        """The decoded JSON body, read within the body deadline and :data:`MAX_BODY_BYTES`."""
        too_large = OfrepFailure(413, ErrorCode.GENERAL, f"the body is over {MAX_BODY_BYTES} bytes")
        if (request.content_length or 0) > MAX_BODY_BYTES:
            raise too_large
        try:
            async with asyncio.timeout(self._body_timeout):
                raw = await request.read()
        except TimeoutError as exc:
            reason = f"the body did not arrive within {self._body_timeout:g} s"
            raise OfrepFailure(408, ErrorCode.GENERAL, reason, close=True) from exc
        except web.HTTPRequestEntityTooLarge as exc:
            raise too_large from exc
        if len(raw) > MAX_BODY_BYTES:
            raise too_large
        return decoded(raw)


CONFIGURATION: dict[str, Any] = {
    "name": "rollout-controller",
    "capabilities": {
        "cacheInvalidation": {
            "polling": {"enabled": True, "minPollingIntervalMs": POLLING_INTERVAL_MS}
        },
        "flagEvaluation": {"supportedTypes": ["boolean", "string", "int", "float", "object"]},
    },
}
"""``GET /ofrep/v1/configuration``: every value type (arm values), polled at most once a second."""


def _two_environments(path: str, in_key: str) -> str:
    return f"the path names the {path} environment and the flag key {in_key}: name one"


def _success(found: Evaluation, key: str) -> dict[str, Any]:
    """The answer for ``key`` as the app named it; outside the default environment
    ``metadata.flagKey`` is the flag's key there, which its events name (``checkout@staging``)."""
    return {
        "key": key,
        "value": found.value,
        "reason": found.reason.value,
        "variant": found.variant,
        # ``version``: what OpenFeature's OpenTelemetry hooks put on their evaluation
        # events as ``feature_flag.version`` (docs/otel.md); a string, as they read it.
        "metadata": {**found.metadata(), "version": str(found.version), **_flag_key(found, key)},
    }


def _flag_key(found: Evaluation, key: str) -> dict[str, str]:
    """Outside the default environment, the key the app's events name the flag by."""
    return {} if found.flag == key else {"flagKey": found.flag}


def _failure(found: Evaluation, key: str) -> dict[str, Any]:
    assert found.error is not None
    return {"key": key, "errorCode": found.error.value, "errorDetails": found.detail}


def refusal(refused: Refused) -> web.Response:
    """A request refused for its key or origin, in OFREP's error shape."""
    body = {"errorCode": ErrorCode.GENERAL.value, "errorDetails": refused.reason}
    return _json(body, status=refused.status)


def _matches(given: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weakly, as RFC 9110 compares it).

    ``*`` names no tag: OFREP's client sends the ETag it last got, and an answer
    is only unchanged for the context and states that tag was made of.
    """
    if not given:
        return False
    return any(tag.strip().removeprefix("W/") == etag for tag in given.split(","))


def _json(
    data: dict[str, Any], *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )
