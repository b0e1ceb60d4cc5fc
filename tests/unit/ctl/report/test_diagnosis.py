"""Where rolloutctl asks for the controller's readiness reason, and how its reads ask again
past the controller's read rate."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from controller.ctl.app import main
from controller.ctl.looking.diagnosis import ENV_HEALTH_URL, health_url
from tests.support.app_client import app_client


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8001"),
        ("https://controller.example:443", "https://controller.example:444"),
        ("http://[::1]:8000", "http://[::1]:8001"),
        ("http://controller.example", None),  # no port: nothing to guess from
        ("http://127.0.0.1:65535", None),
        ("http://127.0.0.1:notaport", None),
    ],
)
def test_the_health_port_is_the_next_one_by_default(
    base: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_HEALTH_URL, raising=False)
    assert health_url(base) == expected


def test_the_environment_names_the_health_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_HEALTH_URL, "http://probes.internal:9000/")
    assert health_url("http://127.0.0.1:8000") == "http://probes.internal:9000"


def _controller(refusals: int, asked: list[str]) -> web.Application:
    """A controller that answers its first ``refusals`` reads with 429, then the listing."""

    async def rollouts(request: web.Request) -> web.Response:
        asked.append(request.path)
        if len(asked) <= refusals:
            refusal = web.json_response({"error": "over this client's read rate"}, status=429)
            refusal.headers["Retry-After"] = "0"
            return refusal
        return web.json_response({"rollouts": []})

    app = web.Application()
    app.router.add_get("/rollouts", rollouts)
    return app


@pytest.mark.parametrize("refusals", [0, 1, 3])
async def test_a_read_over_the_rate_is_asked_again_after_its_retry_after(
    capsys: pytest.CaptureFixture[str], refusals: int
) -> None:
    asked: list[str] = []
    async with app_client(_controller(refusals, asked)) as http:
        url = str(http.base_url).rstrip("/")
        code = await asyncio.to_thread(main, ["status", "--json", "--url", url])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert '"rollouts"' in out
    assert asked == ["/rollouts"] * (refusals + 1)
