"""Who may use the routes for apps (OFREP, ``POST /v1/events``, the reads): app keys, CORS.

Each guarded route is wrapped by :meth:`AppAccess.guard`: before its body is
read, the request's ``Origin`` (if any), its ``Authorization: Bearer`` key and
the key's scope are judged by :func:`controller.core.trust.app_keys.access` against
the book of keys; a refusal is answered (401 or 403, with the reason), and
counted, without calling the route. Answers to an origin in
``http.cors_origins`` carry ``Access-Control-Allow-Origin`` with ``Vary:
Origin``, refusals too, so that a page on that origin reads why it was refused
(a server key, a revoked key) instead of a bare network error.

:meth:`AppAccess.preflight` answers a CORS preflight (``OPTIONS``): 204 with
the methods and headers the routes take for an origin in
``http.cors_origins``, 403 with the reason for any other. The reads of apps
(``GET /flags``, ``GET /v1/segments*``) are guarded the same way, scope
``evaluate``, and admit the webhook token too. No other route of the server
uses app keys: the console, ``/rollouts*``, ``/app-keys`` and the webhooks
take the webhook token only, so an app key is never accepted there.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Collection, Mapping

from aiohttp import web

from controller.core.trust import (
    Admitted,
    AppKey,
    Policy,
    Refused,
    Scope,
    access,
    bearer,
    digest,
    preflight,
)

KeySource = Callable[[], Awaitable[Mapping[str, AppKey]]]
Alternative = Callable[[web.Request, Mapping[str, AppKey]], Admitted | Refused | None]
"""Another credential a route takes (a stream token in its URL): its verdict, or None to
judge the ``Authorization`` header as ever."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Render = Callable[[Refused], web.Response]
Count = Callable[[Scope, str], None]
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-None-Match",
    "Access-Control-Max-Age": "600",
}
EXPOSED = "ETag, Retry-After"
UNKNOWN = "unknown_key"
"""The refusal of a key the book does not hold: judged again against a book read since."""
ADMITTED_KEY: web.RequestKey[AppKey] = web.RequestKey("app_key", AppKey)
"""Where a guarded request keeps the app key it was admitted with (absent: none needed)."""


class AppAccess:
    """The keys and origins policy of the routes for apps."""

    def __init__(
        self,
        keys: KeySource,
        policy: Policy,
        *,
        count: Count | None = None,
        fresh: KeySource | None = None,
    ) -> None:
        """``keys``: the book held; ``fresh``: one read since it was asked for, which a key
        the held book does not know is judged against again, so a key is in force as soon
        as it is stored (the decision that made it published after)."""
        self._keys, self._policy, self._fresh = keys, policy, fresh
        self._count = count or (lambda _scope, _outcome: None)

    @property
    def policy(self) -> Policy:
        return self._policy

    def guard(
        self,
        handler: Handler,
        scope: Scope,
        render: Render,
        *,
        operator: str | None = None,
        alternative: Alternative | None = None,
        require_key: bool | None = None,
    ) -> Handler:
        """``handler`` behind the key and origin checks of ``scope``; refusals by ``render``.

        ``operator``: the webhook token, admitted too where an operator reads what apps read
        (``rolloutctl audience`` reads ``/flags``); never from a browser. ``alternative``:
        another credential the route takes, judged first. ``require_key``: whether a request
        without credentials is refused (None: as the policy says)."""
        policy = self._policy
        if require_key is not None:
            policy = Policy(require_keys=require_key, origins=policy.origins)

        async def guarded(request: web.Request) -> web.StreamResponse:
            origin = request.headers.get("Origin")
            header = request.headers.get("Authorization")
            if operator is not None and origin is None and _same(bearer(header), operator):
                return await handler(request)

            def judged(keys: Mapping[str, AppKey]) -> Admitted | Refused:
                return (None if alternative is None else alternative(request, keys)) or access(
                    credentials=bearer(header),
                    scheme_given=bool(header and header.strip()),
                    origin=origin,
                    scope=scope,
                    keys=keys,
                    policy=policy,
                )

            found = judged(await self._keys())
            if isinstance(found, Refused) and found.outcome == UNKNOWN and self._fresh:
                found = judged(await self._fresh())  # made since the book was read?
            if isinstance(found, Refused):
                self._count(scope, found.outcome)
                response: web.StreamResponse = render(found)
            else:
                if found.key is not None:
                    request[ADMITTED_KEY] = found.key
                response = await handler(request)
            if origin is not None and origin in self._policy.origins:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Expose-Headers"] = EXPOSED
                response.headers["Vary"] = "Origin"
            return response

        return guarded

    def preflight_for(self, scope: Scope, render: Render) -> Handler:
        """The ``OPTIONS`` handler of a route of ``scope``."""

        async def answer(request: web.Request) -> web.StreamResponse:
            origin = request.headers.get("Origin")
            refused = preflight(origin, self._policy)
            if refused is not None:
                self._count(scope, refused.outcome)
                return render(refused)
            assert origin is not None
            headers = {**PREFLIGHT_HEADERS, "Access-Control-Allow-Origin": origin, "Vary": "Origin"}
            return web.Response(status=204, headers=headers)

        return answer


def key_of(request: web.Request) -> AppKey | None:
    """The app key a guarded request was admitted with (None: the webhook token, or no key
    where none is required)."""
    return request.get(ADMITTED_KEY)


def _same(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest((given or "").encode(), expected.encode())


def client_of(request: web.Request) -> str:
    """Whom a request's rate is counted for: its app key (admitted before this is asked),
    else its remote address."""
    key = bearer(request.headers.get("Authorization"))
    return f"key:{digest(key)[:32]}" if key else f"addr:{request.remote or 'unknown'}"


def open_access() -> AppAccess:
    """No keys and no browser origins: what routes built without a policy answer to."""

    async def none() -> Mapping[str, AppKey]:
        return {}

    return AppAccess(none, Policy(require_keys=False, origins=frozenset()))


KeyList = Callable[[], Awaitable[Collection[AppKey]]]


class KeyListRoute:
    """``GET /app-keys``: every key, as :meth:`AppKey.shown` shows it (never a hash).

    An admin route: with ``http.webhook_token`` set it wants that token
    (``Authorization: Bearer``), and without one it is served only when the server
    is bound to loopback, as the console is. An app key is never accepted here.
    """

    def __init__(self, keys: KeyList, *, token: str | None, loopback: bool) -> None:
        self._keys, self._token, self._loopback = keys, token, loopback

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/app-keys", self._list)

    async def _list(self, request: web.Request) -> web.Response:
        if self._token is None and not self._loopback:
            reason = "set http.webhook_token, or bind the server to a loopback address"
            return web.json_response({"error": reason}, status=403)
        if self._token is not None:
            given = bearer(request.headers.get("Authorization")) or ""
            if not hmac.compare_digest(given.encode(), self._token.encode()):
                reason = "the webhook token is required (Authorization: Bearer); app keys are not"
                return web.json_response({"error": reason}, status=401)
        keys = sorted(await self._keys(), key=lambda k: (k.created_ms, k.id))
        return web.json_response({"keys": [key.shown() for key in keys]})
