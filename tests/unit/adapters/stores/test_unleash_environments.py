"""Unleash's environments: the admin API's list read at the edge, bounded, and kept briefly."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from controller.adapters.unleash.answers import BackendUnavailable, Unreadable, parse_environments
from controller.adapters.unleash.client import UnleashAdmin
from controller.core.common.errors import ControllerError
from controller.daemon.backends import KnownEnvironments
from controller.settings import UnleashSettings

SETTINGS = UnleashSettings(url="http://unleash", admin_token=SecretStr("*:*.secret"))


def entry(name: str, enabled: bool = True, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "production", "sortOrder": 1, "enabled": enabled, **extra}


OPEN_SOURCE = {  # what unleash-server 6.10.1 answers, its counts left out
    "version": 1,
    "environments": [
        entry("default", enabled=False, protected=True),
        entry("development", type="development"),
        entry("production"),
    ],
}
READ: dict[str, tuple[Any, frozenset[str]]] = {
    "open-source Unleash: development and production, default disabled": (
        OPEN_SOURCE, frozenset({"development", "production"}),
    ),
    "an enterprise server's own environments": (
        {"environments": [entry("dev"), entry("staging"), entry("prod")]},
        frozenset({"dev", "staging", "prod"}),
    ),
    "every environment disabled": ({"environments": [entry("production", False)]}, frozenset()),
    "none at all": ({"environments": []}, frozenset()),
}  # fmt: skip


@pytest.mark.parametrize(("body", "found"), READ.values(), ids=READ)
def test_the_enabled_environments_are_read(body: Any, found: frozenset[str]) -> None:
    assert parse_environments(body) == found


UNREADABLE: dict[str, tuple[Any, str]] = {
    "a login page's text": ("<html>sign in</html>", "the answer: Input should be a valid"),
    "no list": ({"version": 1}, "environments: Field required"),
    "a list of names": ({"environments": ["production"]}, "environments.0: Input should be"),
    "enabled as a string": (
        {"environments": [{"name": "production", "enabled": "true"}]},
        "environments.0.enabled: Input should be a valid boolean",
    ),
    "an empty name": ({"environments": [entry("")]}, "environments.0.name: String should have"),
    "a name too long": ({"environments": [entry("p" * 101)]}, "environments.0.name: String"),
    "too many environments": (
        {"environments": [entry(f"e{i}") for i in range(101)]},
        "environments: List should have at most 100 items",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("body", "named"), UNREADABLE.values(), ids=UNREADABLE)
def test_an_answer_of_another_shape_is_unreadable_naming_the_field(body: Any, named: str) -> None:
    with pytest.raises(Unreadable) as caught:
        parse_environments(body)
    assert str(caught.value).startswith(
        f"Unleash's environments are not a list of environments: {named}"
    )
    assert len(str(caught.value)) <= 300


def admin(status: int, body: Any = None, *, text: str | None = None) -> UnleashAdmin:
    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/api/admin/environments")
        assert request.headers["Authorization"] == "*:*.secret"
        if text is not None:
            return httpx.Response(status, text=text, headers={"content-type": "text/html"})
        return httpx.Response(status, json=body)

    return UnleashAdmin(SETTINGS, transport=httpx.MockTransport(handler))


async def test_the_client_asks_the_admin_api_for_the_environments() -> None:
    async with admin(200, OPEN_SOURCE) as client:
        assert await client.environments() == frozenset({"development", "production"})


@pytest.mark.parametrize(
    ("status", "body", "text", "retriable"),
    [
        (401, {"message": "bad token"}, None, True),
        (503, None, None, True),
        (200, None, "<html>sign in</html>", True),
        (400, {"message": "no"}, None, False),
    ],
)
async def test_a_refusal_or_a_page_is_no_list(
    status: int, body: Any, text: str | None, retriable: bool
) -> None:
    async with admin(status, body, text=text) as client:
        with pytest.raises(ControllerError) as caught:
            await client.environments()
    assert isinstance(caught.value, BackendUnavailable) is retriable


class Reads:
    """A server whose environments are read through :class:`KnownEnvironments`."""

    def __init__(self) -> None:
        self.count, self.down, self.now = 0, False, 100.0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> frozenset[str]:
        self.count += 1
        await self.gate.wait()
        if self.down:
            raise BackendUnavailable("Unleash unreachable: ConnectError")
        return frozenset({"development", "production"})


async def test_an_answer_is_kept_for_its_time_then_read_again() -> None:
    reads = Reads()
    known = KnownEnvironments(reads, ttl_seconds=30, clock=lambda: reads.now)
    assert await known() == frozenset({"development", "production"})
    reads.now += 29
    await known()
    assert reads.count == 1
    reads.now += 2
    await known()
    assert reads.count == 2


async def test_a_failure_is_not_kept_and_the_next_call_asks_again() -> None:
    reads = Reads()
    known = KnownEnvironments(reads, clock=lambda: reads.now)
    reads.down = True
    with pytest.raises(BackendUnavailable):
        await known()
    reads.down = False
    assert await known() == frozenset({"development", "production"})
    assert reads.count == 2


async def test_callers_at_once_share_one_request() -> None:
    reads = Reads()
    reads.gate.clear()
    known = KnownEnvironments(reads, clock=lambda: reads.now)
    calls = [asyncio.create_task(known()) for _ in range(5)]
    await asyncio.sleep(0)
    reads.gate.set()
    assert set(await asyncio.gather(*calls)) == {frozenset({"development", "production"})}
    assert reads.count == 1
