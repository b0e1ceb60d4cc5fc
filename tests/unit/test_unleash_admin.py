"""The Unleash admin client against a scripted server: whole strategies, bounded answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from controller.adapters.unleash import BackendUnavailable, UnleashAdmin, parse_feature
from controller.core.errors import ControllerError
from controller.core.serving import Serving, Target
from controller.settings import UnleashSettings

TARGET = Target("new-checkout", "default", "production", "userId")
SETTINGS = UnleashSettings(url="http://unleash", admin_token=SecretStr("*:*.secret"))
BASE = "/api/admin/projects/default/features/new-checkout"
ENV = f"{BASE}/environments/production"

Handler = Callable[[httpx.Request], httpx.Response]


def admin(handler: Handler, settings: UnleashSettings = SETTINGS) -> UnleashAdmin:
    return UnleashAdmin(settings, transport=httpx.MockTransport(handler))


def feature(enabled: bool, *strategies: dict[str, Any]) -> dict[str, Any]:
    env = {"name": "production", "enabled": enabled, "strategies": list(strategies)}
    return {"name": "new-checkout", "environments": [{"name": "development"}, env]}


def ours(rollout: str = "25", **extra: str) -> dict[str, Any]:
    params = {"rollout": rollout, "stickiness": "userId", "groupId": "new-checkout", **extra}
    return {"id": "s-1", "name": "flexibleRollout", "parameters": params}


async def test_read_finds_the_controller_s_strategy_and_the_environment() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "*:*.secret"
        assert request.url.path == BASE
        other = {"id": "s-0", "name": "default", "parameters": {}}
        return httpx.Response(200, json=feature(True, other, ours(rcFlagVersion="7")))

    async with admin(handler) as client:
        actual = await client.read(TARGET)
    assert actual == Serving(enabled=True, percent=25, stickiness="userId", version=7)
    assert actual.strategy_id == "s-1"


async def test_a_missing_feature_reads_as_absent_and_is_created_strategy_first() -> None:
    calls: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content) if request.content else None
        calls.append((request.method, request.url.path, body))
        if request.method == "GET":
            return httpx.Response(404, json={"message": "no such feature"})
        return httpx.Response(200, json={})

    want = Serving(enabled=True, percent=5, stickiness="userId", version=2)
    async with admin(handler) as client:
        actual = await client.read(TARGET)
        assert not actual.exists
        await client.write(TARGET, want, actual, flag="checkout")
    assert [(m, p) for m, p, _ in calls[1:]] == [
        ("POST", "/api/admin/projects/default/features"),
        ("POST", f"{ENV}/strategies"),
        ("POST", f"{ENV}/on"),
    ]
    strategy = calls[2][2]
    assert strategy["parameters"] == {
        "rollout": "5",
        "stickiness": "userId",
        "groupId": "new-checkout",
        "rcFlag": "checkout",
        "rcFlagVersion": "2",
    }


async def test_a_new_percent_puts_the_whole_strategy_and_leaves_the_environment() -> None:
    calls: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path, orjson.loads(request.content)))
        return httpx.Response(200, json={})

    actual = Serving(True, 25, "userId", 3, strategy_id="s-1")
    async with admin(handler) as client:
        await client.write(TARGET, Serving(True, 50, "userId", 4), actual, flag="checkout")
    assert len(calls) == 1
    method, path, body = calls[0]
    assert (method, path) == ("PUT", f"{ENV}/strategies/s-1")
    assert body["name"] == "flexibleRollout"
    assert body["parameters"]["rollout"] == "50"
    assert set(body["parameters"]) == {
        "rollout",
        "stickiness",
        "groupId",
        "rcFlag",
        "rcFlagVersion",
    }


async def test_off_only_turns_the_environment_off_and_only_once() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        return httpx.Response(200)

    async with admin(handler) as client:
        await client.write(TARGET, Serving(False), Serving(True, 25, "userId", 3), flag="c")
        await client.write(TARGET, Serving(False), Serving(False, 25, "userId", 3), flag="c")
    assert calls == [f"POST {ENV}/off"]


@pytest.mark.parametrize(
    ("status", "retriable"), [(503, True), (500, True), (429, True), (401, True), (400, False)]
)
async def test_refusals_are_retriable_or_not_by_status(status: int, retriable: bool) -> None:
    async with admin(lambda _r: httpx.Response(status, json={"message": "no"})) as client:
        with pytest.raises(ControllerError) as caught:
            await client.read(TARGET)
    assert caught.value.retriable is retriable
    assert f"HTTP {status}" in str(caught.value)


async def test_an_unreachable_server_is_retriable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with admin(handler) as client:
        with pytest.raises(BackendUnavailable, match="ConnectError"):
            await client.read(TARGET)


async def test_an_oversized_answer_is_refused() -> None:
    settings = SETTINGS.model_copy(update={"max_response_bytes": 1024})
    big = {"name": "x", "environments": [], "description": "x" * 5000}
    async with admin(lambda _r: httpx.Response(200, json=big), settings) as client:
        with pytest.raises(ControllerError, match="over 1024 bytes") as caught:
            await client.read(TARGET)
    assert not caught.value.retriable


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "x",
        {"environments": "x"},
        {"environments": [{"name": "production", "strategies": "x"}]},
        {"environments": [{"name": "production", "enabled": "yes", "strategies": [1, None]}]},
        feature(True, ours(rollout="101")),
        feature(True, ours(rollout="-1")),
        feature(True, ours(rollout="2.5")),
        feature(True, ours(rollout="9" * 40)),
    ],
)
def test_hostile_feature_documents_read_as_nothing_served(body: Any) -> None:
    actual = parse_feature(body, TARGET)
    assert actual.percent is None
    assert actual.version is None
