"""The console's sign-in and headers, over a real socket on localhost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from aiohttp import web

from controller.adapters.http.web_console import COOKIE, ConsoleRoutes, session_value
from tests.support.app_client import app_client

TOKEN = "t0ken"


class Pages:
    async def list_fragment(self) -> str:
        return "<p>the list</p>"

    async def rollout_fragment(self, flag: str) -> str | None:
        return None if flag == "nobody" else f"<p>{flag}</p>"

    async def pipeline_fragment(self, flag: str) -> str | None:
        return None if flag == "nobody" else f"<p>pipeline of {flag}</p>"

    async def holdout_fragment(self, name: str) -> str | None:
        return None if name == "nobody" else f"<p>holdout {name}</p>"


@asynccontextmanager
async def served(
    *, token: str | None, bound_to: str, hosts: tuple[str, ...] = ()
) -> AsyncIterator[httpx.AsyncClient]:
    """The console routes as a server bound to ``bound_to`` would serve them."""
    app = web.Application()
    extra = {"allowed_hosts": hosts} if hosts else {}
    ConsoleRoutes(Pages(), token=token, host=bound_to, **extra).add_to(app.router)
    async with app_client(app) as client:
        yield client


async def test_the_token_once_becomes_a_strict_http_only_cookie() -> None:
    async with served(token=TOKEN, bound_to="0.0.0.0") as http:
        assert (await http.get("/ui")).status_code == 401
        assert (await http.get("/ui?token=wrong")).status_code == 401
        bearer = await http.get("/ui", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200
        assert "default-src 'none'" in bearer.headers["Content-Security-Policy"]
        assert bearer.headers["Cache-Control"] == "no-store"
        assert TOKEN not in bearer.text
        answer = await http.get(f"/ui/rollouts/a?token={TOKEN}&x=1")
        assert answer.status_code == 303
        assert answer.headers["Location"] == "/ui/rollouts/a?x=1"
        cookie = answer.headers["Set-Cookie"]
        assert f"{COOKIE}={session_value(TOKEN)}" in cookie
        assert TOKEN not in cookie.split(";")[0].split("=", 1)[1]
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/ui"):
            assert attribute in cookie
        cookie_header = {"Cookie": f"{COOKIE}={session_value(TOKEN)}"}
        signed_in = await http.get("/ui/fragment/list", headers=cookie_header)
        assert signed_in.text == "<p>the list</p>"


async def test_without_a_token_only_a_loopback_bind_serves_the_console() -> None:
    async with served(token=None, bound_to="0.0.0.0") as http:
        assert (await http.get("/ui")).status_code == 403
    async with served(token=None, bound_to="127.0.0.1") as http:
        page = await http.get("/ui")
        assert page.status_code == 200
        assert 'data-fragment="/ui/fragment/list"' in page.text
        assert (await http.get("/ui/rollouts/nobody")).status_code == 404
        assert (await http.get("/ui/static/console.js")).status_code == 200
        assert (await http.get("/ui/static/..%2Fpages.py")).status_code == 404


async def raw_get(port: int, target: bytes, host: bytes = b"127.0.0.1") -> bytes:
    """One request with ``target`` sent as it is (no client re-encodes it), and the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
        writer.write(head)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_a_crlf_in_the_signed_in_path_is_answered_and_never_reaches_a_header() -> None:
    async with served(token=TOKEN, bound_to="0.0.0.0") as http:
        port = http.base_url.port
        assert port is not None
        injected = b"/ui/rollouts/a%0d%0aSet-Cookie:%20evil=1?token=" + TOKEN.encode()
        answer = await raw_get(port, injected)
        head = answer.split(b"\r\n\r\n", 1)[0]
        assert head.startswith(b"HTTP/1.1 303"), answer[:200]
        fields = head.split(b"\r\n")[1:]
        assert not any(f.lower().startswith(b"set-cookie: evil") for f in fields), head
        location = next(line for line in head.split(b"\r\n") if line.startswith(b"Location:"))
        assert location == b"Location: /ui/rollouts/a%0D%0ASet-Cookie%3A%20evil%3D1"
        # Still a working sign-in: the redirect's target is the same page
        cookie = {"Cookie": f"{COOKIE}={session_value(TOKEN)}"}
        followed = await http.get(location.split(b": ", 1)[1].decode(), headers=cookie)
        assert followed.status_code == 200
        assert "Set-Cookie" not in followed.headers


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1", 200),
        ("localhost", 200),
        ("LOCALHOST:8000", 200),
        ("[::1]:8000", 200),
        ("127.0.0.1:8000", 200),
        ("console.internal:8000", 200),
        ("attacker.example", 421),
        ("attacker.example:8000", 421),
        ("127.0.0.1.attacker.example", 421),
        ("", 421),
    ],
)
async def test_without_a_token_the_console_answers_only_allowed_host_names(
    host: str, status: int
) -> None:
    async with served(token=None, bound_to="127.0.0.1", hosts=("console.internal",)) as http:
        port = http.base_url.port
        assert port is not None
        for target in (b"/ui", b"/ui/fragment/list", b"/ui/rollouts/a"):
            answer = await raw_get(port, target, host=host.encode())
            assert answer.startswith(f"HTTP/1.1 {status}".encode()), (target, answer[:200])


NAMED_PAGES = {
    "a flag's own pipeline": ("pipelines", "checkout", "<p>pipeline of checkout</p>",
                              ("checkout@staging", "%3Cscript%3E", "x" * 129)),
    "a holdout": ("holdouts", "q4", "<p>holdout q4</p>", ("Q4", "%3Cscript%3E", "x" * 65)),
}  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "name", "body", "bad_names"), NAMED_PAGES.values(), ids=NAMED_PAGES
)
async def test_a_named_page_is_signed_in_and_refuses_what_is_not_a_name(
    kind: str, name: str, body: str, bad_names: tuple[str, ...]
) -> None:
    async with served(token=TOKEN, bound_to="0.0.0.0") as http:
        assert (await http.get(f"/ui/{kind}/{name}")).status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        page = await http.get(f"/ui/{kind}/{name}", headers=bearer)
        assert page.status_code == 200
        assert body in page.text
        assert f'data-fragment="/ui/fragment/{kind}/{name}"' in page.text
        live = await http.get(f"/ui/fragment/{kind}/{name}", headers=bearer)
        assert live.text == body
        assert (await http.get(f"/ui/{kind}/nobody", headers=bearer)).status_code == 404
        for bad in bad_names:
            refused = await http.get(f"/ui/{kind}/{bad}", headers=bearer)
            assert refused.status_code == 400
            assert "<script>" not in refused.text
            fragment = await http.get(f"/ui/fragment/{kind}/{bad}", headers=bearer)
            assert fragment.status_code == 400
