"""The read API: ``GET /flags`` for apps, ``GET /rollouts*`` for operators.

``/flags`` lists the current flag states with an ETag, so pollers get 304
when nothing changed. ``/rollouts`` and ``/rollouts/{flag}`` show each
rollout's phase, stage, time in stage and the gate's current evidence (what
``rolloutctl status`` prints); ``/rollouts/{flag}/history`` its gate history,
stage by stage; ``/rollouts/{flag}/verdict`` what a deploy gate waits on (``done``, ``ok``:
:mod:`controller.core.rollouts.deploy_verdict`).

Nothing a reader does may slow what the process must do at once (a kill, a
probe), so:

* ``/flags`` and ``/rollouts`` are served from a :class:`ReadSnapshot` (at most
  ``http.reads_max_age_seconds`` old, one build however many readers), with an
  ETag and 304 for ``If-None-Match``; the daemon builds them away from its
  event loop (:mod:`controller.daemon.serving.read_worker`);
* each client (its remote address) may make ``http.reads_per_second`` requests
  to ``/rollouts*`` a second (a token bucket, a second's worth at once); past it
  429 with ``Retry-After``;
* with ``http.webhook_token`` set, ``/rollouts*`` want it
  (``Authorization: Bearer``; an app key is never accepted there), 401 otherwise; the
  verdict also takes an app key of scope ``verdicts``, a read-only key a deploy tool may
  hold (it reads verdicts and nothing else). A key bound to one environment reads that
  environment's verdicts only, as OFREP evaluates: ``/rollouts/checkout/verdict`` is
  ``checkout`` there, and a flag key naming another (``checkout@production``) is a 403;
* ``/flags`` is an app's read, guarded like OFREP (scope ``evaluate``,
  :mod:`controller.adapters.http.app_access`) unless ``http.public_flags``; the
  operator token is admitted there too, for ``rolloutctl``. An app key bound
  to one environment reads that environment's flags only (the whole list
  filtered once per change and environment, with its own ETag).
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from controller.adapters.http.app_access import AppAccess, key_of, open_access
from controller.adapters.http.read_snapshot import BodySource, ReadSnapshot, Served
from controller.core.common import RateLimiter, environment_of, scoped, split
from controller.core.reading import RolloutHistory, RolloutStatus
from controller.core.release import SINGLE, Environments
from controller.core.rollouts import deploy_verdict
from controller.core.trust import Refused, Scope, bearer, bound_refusal, request_environment

StatusSource = Callable[[str | None], Awaitable[list[RolloutStatus]]]
HistorySource = Callable[[str], Awaitable[RolloutHistory | None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FlagListRoute:
    """``GET /flags`` from a snapshot of ``build``'s answer, behind the apps' guard."""

    def __init__(
        self,
        build: BodySource,
        *,
        max_age: float,
        access: AppAccess | None = None,
        public: bool = False,
        operator_token: str | None = None,
        environments: Callable[[], Environments] = lambda: SINGLE,
    ) -> None:
        """``environments``: those served now, for keys bound to one."""
        self.snapshot = ReadSnapshot(build, max_age=max_age)
        self._guard = AppReadGuard(access, public=public, operator_token=operator_token)
        self._environments = environments
        self._bound: dict[str, tuple[str, Served]] = {}
        """Per environment a bound key serves: the whole list's ETag, and that list filtered."""

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/flags", self._guard(self._list))

    async def _list(self, request: web.Request) -> web.Response:
        served, key = await self.snapshot.get(), key_of(request)
        if key is None or key.environment is None:
            return answer(request, served)
        return answer(request, self._in(key.environment, served))

    def _in(self, environment: str, whole: Served) -> Served:
        """The flags of ``environment`` in ``whole``, filtered once per change of it."""
        held = self._bound.get(environment)
        if held is None or held[0] != whole.etag:
            default = self._environments().default
            states = orjson.loads(whole.body)
            kept = [s for s in states if environment_of(s["flag"], default) == environment]
            held = (whole.etag, Served.of(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)))
            self._bound[environment] = held
        return held[1]


class AppReadGuard:
    """What guards the reads of apps (``/flags``, ``/v1/segments*``): the apps' keys, scope
    ``evaluate``, or the operator token; nothing where the reads are public."""

    def __init__(
        self, access: AppAccess | None, *, public: bool, operator_token: str | None
    ) -> None:
        self._access = access or open_access()
        self._public, self._operator = public, operator_token

    def __call__(self, handler: Handler) -> Handler:
        if self._public:
            return handler
        return self._access.guard(handler, Scope.EVALUATE, refusal, operator=self._operator)


class RolloutRoutes:
    """``GET /rollouts``, ``/rollouts/{flag}`` and ``/rollouts/{flag}/history``."""

    def __init__(
        self,
        *,
        status: StatusSource,
        history: HistorySource | None,
        listing: BodySource | None = None,
        max_age: float,
        token: str | None,
        requests_per_second: float,
        count_limited: Callable[[], None] | None = None,
        access: AppAccess | None = None,
        environments: Callable[[], Environments] = lambda: SINGLE,
    ) -> None:
        """``listing``: the whole list's JSON; built from ``status`` here when not given.
        ``access``: the apps' keys, of which those of scope ``verdicts`` read verdicts, each
        in the one of ``environments`` it is bound to, if any."""
        self._status, self._history, self._token = status, history, token
        self._access = access or open_access()
        self._environments = environments
        self.snapshot = ReadSnapshot(listing or self._listing, max_age=max_age)
        burst = max(1.0, requests_per_second)
        self._limiter = RateLimiter(requests_per_second, burst, clock=time.monotonic)
        self._count_limited = count_limited or (lambda: None)

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/rollouts", self._guard(self._list))
        router.add_get("/rollouts/{flag}", self._guard(self._one))
        router.add_get("/rollouts/{flag}/history", self._guard(self._flag_history))
        verdict = self._limited(self._verdict)
        required = self._token is not None
        guarded = self._access.guard(
            verdict, Scope.VERDICTS, refusal, operator=self._token, require_key=required
        )
        router.add_get("/rollouts/{flag}/verdict", guarded)

    def _guard(self, handler: Handler) -> Handler:
        """``handler`` for the operator only (where a token is set), within the client's rate."""
        limited = self._limited(handler)

        async def guarded(request: web.Request) -> web.StreamResponse:
            given = bearer(request.headers.get("Authorization")) or ""
            if self._token is not None and not same(given, self._token):
                reason = "the operator token is required (Authorization: Bearer); app keys are not"
                return error(401, reason)
            return await limited(request)

        return guarded

    def _limited(self, handler: Handler) -> Handler:
        """``handler`` within the client's read rate (429 with ``Retry-After`` past it)."""

        async def limited(request: web.Request) -> web.StreamResponse:
            wait = self._limiter.wait(f"addr:{request.remote or 'unknown'}")
            if wait > 0:
                self._count_limited()
                limited = error(429, "over this client's read rate; retry after Retry-After")
                limited.headers["Retry-After"] = str(max(1, math.ceil(wait)))
                return limited
            return await handler(request)

        return limited

    async def _listing(self) -> bytes:
        return orjson.dumps({"rollouts": [s.served() for s in await self._status(None)]})

    async def _list(self, request: web.Request) -> web.Response:
        return answer(request, await self.snapshot.get())

    async def _one(self, request: web.Request) -> web.Response:
        flag = request.match_info["flag"]
        found = await self._status(flag)
        if not found:
            return error(404, f"no rollout for flag {flag!r}")
        return _json(found[0].served())

    async def _verdict(self, request: web.Request) -> web.Response:
        flag = self._verdict_flag(request)
        if isinstance(flag, web.Response):
            return flag
        found = await self._status(flag)
        if not found:
            return error(404, f"no rollout for flag {flag!r}: nothing was ever started for it")
        status = found[0]
        verdict = deploy_verdict(
            phase=status.phase,
            pause_reason=status.pause_reason,
            gate=status.verdict,
            why=status.verdict_reason,
            version=status.flag_version,
            waiting=status.next_move.why if status.next_move is not None else None,
        )
        return _json(verdict.model_dump(mode="json"))

    def _verdict_flag(self, request: web.Request) -> str | web.Response:
        """The stored key of the flag whose verdict is asked, as OFREP reads a flag key: in
        the environment it names (``checkout@staging``), else the app key's, else the
        default; a 404 for an environment not served, a 403 for one the key is not bound to."""
        flag, named = split(request.match_info["flag"])
        key, served = key_of(request), self._environments()
        environment = served.of(request_environment(key, named))
        if (unknown := served.unknown(environment)) is not None:
            return error(404, unknown)
        if (refused := bound_refusal(key, environment)) is not None:
            return refusal(refused)
        return scoped(flag, environment, served.default)

    async def _flag_history(self, request: web.Request) -> web.Response:
        flag = request.match_info["flag"]
        found = await self._history(flag) if self._history is not None else None
        if found is None:
            return error(404, f"no rollout history for flag {flag!r}")
        return _json(found.served())


def answer(request: web.Request, served: Served) -> web.Response:
    """``served``, or 304 when the request's ``If-None-Match`` names its ETag."""
    if request.headers.get("If-None-Match") == served.etag:
        return web.Response(status=304, headers={"ETag": served.etag})
    return web.Response(
        body=served.body, content_type="application/json", headers={"ETag": served.etag}
    )


def same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def refusal(refused: Refused) -> web.Response:
    """A read refused for its key or origin: the status and the reason."""
    return error(refused.status, refused.reason)


def error(status: int, reason: str) -> web.Response:
    return _json({"error": reason}, status=status)


def _json(data: object, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
