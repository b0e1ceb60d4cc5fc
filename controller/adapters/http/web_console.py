"""The console's HTTP side: ``/ui`` pages, their live fragments and static files, signed in.

Access: with ``http.webhook_token`` set, the console wants that token. A
browser presents it once, as ``/ui?token=...``: the answer is a redirect to
the same page without it (so it leaves the address bar and the history) that
sets a session cookie, ``HttpOnly`` (no script reads it), ``SameSite=Strict``
(no other site's page sends it) and limited to ``/ui``. The cookie holds an
HMAC of the token, not the token, and changing the token ends every session.
``Authorization: Bearer <token>`` works too, for scripts. Without a token the
console is served only when the server is bound to a loopback address, and
answers 403 otherwise; and since any web page can make a browser reach a
loopback address under a name of its own (DNS rebinding), it then answers only
requests whose ``Host`` is ``localhost``, ``127.0.0.1``, ``[::1]``, the bound
address or a name in ``http.console_hosts`` (421 otherwise). No page shows the
token.

No header is made of request text: the sign-in redirect's ``Location`` is the
path percent-encoded again, so a decoded CR or LF in it stays ``%0D%0A``.

Every answer is ``no-store`` with a Content Security Policy that allows only
the console's own script and stylesheet: flag names, reasons and model
rationales are escaped when rendered, and the policy is the second fence.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from importlib import resources
from typing import Protocol
from urllib.parse import quote, urlencode

from aiohttp import web

from controller.console import pages
from controller.core.reading import flag_problem
from controller.core.wire import HOLDOUT_NAME_PATTERN

COOKIE = "rc_console"
STATIC = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class ConsoleSource(Protocol):
    """What the console shows (see :class:`controller.daemon.serving.console.ConsoleData`)."""

    async def list_fragment(self) -> str: ...
    async def rollout_fragment(self, flag: str) -> str | None: ...
    async def pipeline_fragment(self, flag: str) -> str | None: ...
    async def holdout_fragment(self, name: str) -> str | None: ...


def session_value(token: str) -> str:
    """The cookie a signed-in browser holds: derived from the token, never the token."""
    return hmac.new(token.encode(), b"rollout-console-session-v1", hashlib.sha256).hexdigest()


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port and brackets, lower case."""
    name = header.strip().lower()
    if name.startswith("["):  # an IPv6 literal: [::1]:8000
        return name[1 : name.find("]")] if "]" in name else ""
    return name.rsplit(":", 1)[0] if name.count(":") == 1 else name


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConsoleRoutes:
    """The ``/ui`` routes over a :class:`ConsoleSource`."""

    def __init__(
        self,
        source: ConsoleSource,
        *,
        token: str | None,
        host: str,
        allowed_hosts: tuple[str, ...] = (),
    ) -> None:
        self._source, self._token = source, token
        self._open = token is None and is_loopback(host)
        names = (*LOOPBACK_NAMES, host, *allowed_hosts)
        self._hosts = frozenset(host_name(n) if n.startswith("[") else n.lower() for n in names)
        folder = resources.files("controller.console").joinpath("static")
        self._static = {name: folder.joinpath(name).read_bytes() for name in STATIC}

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/ui", self._list_page)
        router.add_get("/ui/", self._list_page)
        router.add_get("/ui/rollouts/{flag}", self._rollout_page)
        router.add_get("/ui/fragment/list", self._list_fragment)
        router.add_get("/ui/fragment/rollouts/{flag}", self._rollout_fragment)
        router.add_get("/ui/pipelines/{flag}", self._pipeline_page)
        router.add_get("/ui/fragment/pipelines/{flag}", self._pipeline_fragment)
        router.add_get("/ui/holdouts/{name}", self._holdout_page)
        router.add_get("/ui/fragment/holdouts/{name}", self._holdout_fragment)
        router.add_get("/ui/static/{name}", self._static_file)

    def _refusal(self, request: web.Request) -> web.Response | None:
        """None when the request may see the console; otherwise the answer to give."""
        if self._open:
            if host_name(request.headers.get("Host", "")) in self._hosts:
                return None
            text = "This address is not one the console answers to: open it as localhost."
            return _html(pages.message_page("Unknown host", text), status=421)
        if self._token is None:
            text = "Set http.webhook_token, or bind the server to a loopback address."
            return _html(pages.message_page("Console disabled", text), status=403)
        return self._signed_in(request, self._token)

    def _signed_in(self, request: web.Request, token: str) -> web.Response | None:
        """None for a signed-in request; a sign-in redirect for the token in the query; or 401."""
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _same(given.strip(), token):
            return None
        if _same(request.cookies.get(COOKIE, ""), session_value(token)):
            return None
        if "token" in request.query and _same(request.query["token"], token):
            rest = {k: v for k, v in request.query.items() if k != "token"}
            # Encoded again: the decoded path may hold CR or LF, which must never reach a header.
            target = quote(request.path, safe="/") + ("?" + urlencode(rest) if rest else "")
            found = web.Response(status=303, headers={**HEADERS, "Location": target})
            found.set_cookie(
                COOKIE,
                session_value(token),
                path="/ui",
                httponly=True,
                samesite="Strict",
                secure=request.secure,
            )
            return found
        text = "Open the console with its token once: /ui?token=… (the webhook token)."
        return _html(pages.message_page("Sign in to the console", text), status=401)

    async def _list_page(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        body = await self._source.list_fragment()
        fragment, every = "/ui/fragment/list", pages.LIST_REFRESH_MS
        return _html(pages.page("Rollouts", body, fragment=fragment, refresh_ms=every))

    async def _rollout_page(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        flag = request.match_info["flag"]
        body = await self._source.rollout_fragment(flag)
        if body is None:
            return _html(pages.message_page("Not found", f"No rollout for flag {flag!r}."), 404)
        fragment = "/ui/fragment/rollouts/" + pages.flag_url(flag).rsplit("/", 1)[1]
        return _html(pages.page(flag, body, fragment=fragment))

    async def _list_fragment(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        return _html(await self._source.list_fragment())

    async def _rollout_fragment(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        body = await self._source.rollout_fragment(request.match_info["flag"])
        return _html(body if body is not None else "<p>No such rollout.</p>", 200 if body else 404)

    async def _pipeline_page(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        flag = request.match_info["flag"]
        if (problem := flag_problem(flag)) is not None:
            return _html(pages.message_page("Not a flag", problem), 400)
        body = await self._source.pipeline_fragment(flag)
        if body is None:
            return _html(pages.message_page("Not found", f"No pipeline for flag {flag!r}."), 404)
        fragment = "/ui/fragment/pipelines/" + quote(flag, safe="")
        return _html(pages.page(f"{flag} pipeline", body, fragment=fragment))

    async def _pipeline_fragment(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        flag = request.match_info["flag"]
        if (problem := flag_problem(flag)) is not None:
            return _html(f"<p>{pages.esc(problem)}</p>", 400)
        body = await self._source.pipeline_fragment(flag)
        return _html(body if body is not None else "<p>No such pipeline.</p>", 200 if body else 404)

    async def _static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            return _html(pages.message_page("Not found", "No such file."), status=404)
        headers = {**HEADERS, "Cache-Control": "max-age=300"}
        return web.Response(body=self._static[name], content_type=STATIC[name], headers=headers)

    async def _holdout_page(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        name = request.match_info["name"]
        if not re.fullmatch(HOLDOUT_NAME_PATTERN, name):
            return _html(pages.message_page("Not a holdout", "No holdout has that name."), 400)
        body = await self._source.holdout_fragment(name)
        if body is None:
            return _html(
                pages.message_page("Not found", f"No rollout names holdout {name!r}."), 404
            )
        fragment = "/ui/fragment/holdouts/" + quote(name, safe="")
        return _html(pages.page(f"holdout {name}", body, fragment=fragment))

    async def _holdout_fragment(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        name = request.match_info["name"]
        if not re.fullmatch(HOLDOUT_NAME_PATTERN, name):
            return _html("<p>No holdout has that name.</p>", 400)
        body = await self._source.holdout_fragment(name)
        return _html(body if body is not None else "<p>No such holdout.</p>", 200 if body else 404)


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=HEADERS)
