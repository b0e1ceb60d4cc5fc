"""The console's sign-in and headers, over a real socket on localhost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from aiohttp import web

from controller.adapters.web_console import COOKIE, ConsoleRoutes, session_value

TOKEN = "t0ken"


class Pages:
    async def list_fragment(self) -> str:
        return "<p>the list</p>"

    async def rollout_fragment(self, flag: str) -> str | None:
        return None if flag == "nobody" else f"<p>{flag}</p>"


@asynccontextmanager
async def served(*, token: str | None, bound_to: str) -> AsyncIterator[httpx.AsyncClient]:
    """The console routes as a server bound to ``bound_to`` would serve them."""
    app = web.Application()
    ConsoleRoutes(Pages(), token=token, host=bound_to).add_to(app.router)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        await runner.cleanup()


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
