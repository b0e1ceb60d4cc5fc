"""The Unleash admin client against a scripted server: whole strategies, bounded answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from controller.adapters.unleash.answers import BackendUnavailable, Unreadable, parse_feature
from controller.adapters.unleash.client import UnleashAdmin
from controller.core.common.errors import ControllerError
from controller.core.serving.serving import Applied, Serving, Target, Verdict, reconcile
from controller.settings import UnleashSettings
from tests.support.dripping import Dripper, canned
from tests.unit.core.serving.test_serving import rollout

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
    ("status", "retriable"),
    [(503, True), (500, True), (429, True), (401, True), (302, True), (400, False)],
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
        {"name": "new-checkout", "environments": "x"},
        {"name": "new-checkout", "environments": [{"name": "production", "strategies": "x"}]},
        {"name": "new-checkout", "environments": [{"name": "production", "enabled": "yes"}]},
        {"name": "new-checkout", "environments": [{"name": "production", "strategies": [1]}]},
        feature(True, {"id": "s-1", "parameters": {"rollout": "5"}}),  # a strategy with no name
        feature(True, {**ours(), "disabled": "no"}),
    ],
)
def test_a_document_of_another_shape_is_unreadable_never_nothing_served(body: Any) -> None:
    with pytest.raises(Unreadable, match="is not a feature document") as caught:
        parse_feature(body, TARGET)
    assert caught.value.retriable


@pytest.mark.parametrize("rollout", ["101", "-1", "2.5", "9" * 40, "\u00b2", "\u0663", "", " 5"])
def test_an_unreadable_rollout_value_is_named_not_raised(rollout: str) -> None:
    actual = parse_feature(feature(True, ours(rollout=rollout)), TARGET)
    assert actual.percent is None
    assert actual.strategy_id == "s-1"
    assert actual.tampered == (f"rollout was set to {rollout[:20]!r}, not a whole percent",)


WANT = Serving(True, 25, "userId", 3)
OURS = ours(rcFlagVersion="3")
CONSTRAINT = {"contextName": "userId", "operator": "IN", "values": ["ana"]}


@pytest.mark.parametrize(
    ("environment", "change"),
    [
        (
            feature(True, OURS, {"id": "s-2", "name": "default", "parameters": {}}),
            "a default strategy (s-2) was added beside the controller's, serving everyone",
        ),
        (
            feature(True, {"id": "s-2", "name": "userWithId", "parameters": {}}, OURS),
            "a userWithId strategy (s-2) was added beside the controller's, serving every unit",
        ),
        (
            feature(True, OURS, {"name": "default", "constraints": [CONSTRAINT]}),
            "a default strategy was added beside the controller's, serving the units its",
        ),
        (
            feature(True, {**OURS, "constraints": [CONSTRAINT]}),
            "1 constraint(s) were added to the flexibleRollout strategy",
        ),
        (
            feature(True, {**OURS, "segments": [4]}),
            "1 segment(s) were added to the flexibleRollout strategy",
        ),
        (
            feature(True, {**OURS, "disabled": True}),
            "the flexibleRollout strategy of new-checkout was disabled",
        ),
        (
            feature(True, ours(rollout="\u00b2", rcFlagVersion="3")),
            "rollout was set to '\u00b2', not a whole percent",
        ),
    ],
)
async def test_what_unleash_would_serve_beside_the_applied_strategy_is_drift_and_named(
    environment: dict[str, Any], change: str
) -> None:
    async with admin(lambda _r: httpx.Response(200, json=environment)) as client:
        actual = await client.read(TARGET)
    record = Applied("r1", applied=WANT)
    verdict, changes = reconcile(rollout(), WANT, actual, record, TARGET)
    assert verdict is Verdict.DRIFT
    assert [c for c in changes if c.startswith(change)], changes


async def test_a_disabled_strategy_a_person_added_serves_nothing_and_is_no_drift() -> None:
    body = feature(True, OURS, {"id": "s-2", "name": "default", "disabled": True})
    async with admin(lambda _r: httpx.Response(200, json=body)) as client:
        actual = await client.read(TARGET)
    assert reconcile(rollout(), WANT, actual, Applied("r1", applied=WANT), TARGET) == (
        Verdict.NOTHING,
        [],
    )


async def test_a_tampered_strategy_is_put_back_whole_when_the_rollout_moves_on() -> None:
    calls: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=feature(True, {**OURS, "constraints": [CONSTRAINT]}))
        calls.append((request.method, request.url.path, orjson.loads(request.content)))
        return httpx.Response(200, json={})

    async with admin(handler) as client:
        actual = await client.read(TARGET)
        held = Applied("r1", applied=WANT, held_version=2)
        assert reconcile(rollout(), WANT, actual, held, TARGET) == (Verdict.WRITE, [])
        await client.write(TARGET, WANT, actual, flag="checkout")
    ((method, path, body),) = calls
    assert (method, path, body["constraints"]) == ("PUT", f"{ENV}/strategies/s-1", [])


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>Sign in</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, content=orjson.dumps(feature(False)), headers={"content-type": "x"}),
        httpx.Response(200, text="{not json", headers={"content-type": "application/json"}),
        httpx.Response(200),
    ],
)
async def test_an_answer_that_is_not_unleash_s_json_is_unreachable_not_a_change(
    answer: httpx.Response,
) -> None:
    async with admin(lambda _r: answer) as client:
        with pytest.raises(BackendUnavailable, match=r"answered .*(JSON|content type)") as caught:
            await client.read(TARGET)
    assert caught.value.retriable


async def test_a_login_page_in_answer_to_a_write_is_no_write_done() -> None:
    page = httpx.Response(200, text="<html>Sign in</html>", headers={"content-type": "text/html"})
    async with admin(lambda _r: page) as client:
        with pytest.raises(BackendUnavailable, match="content type 'text/html'"):
            await client.write(TARGET, Serving(False), Serving(True, 25), flag="c")


async def test_an_answer_dripping_in_fails_within_the_request_s_deadline() -> None:
    # a byte every 0.05 s never trips a 0.3 s per-read timeout: only a deadline ends it
    answer = canned(200, orjson.dumps(feature(True, OURS)))
    dripper = Dripper(lambda *_: _ready(answer), slow=lambda _m, _p: True, every=0.05)
    url = await dripper.start()
    settings = SETTINGS.model_copy(update={"url": url, "request_timeout_seconds": 0.3})
    try:
        async with UnleashAdmin(settings) as client:
            with pytest.raises(BackendUnavailable, match=r"no complete answer within 0\.3 s"):
                await client.read(TARGET)
    finally:
        await dripper.close()


async def _ready(answer: bytes) -> bytes:
    return answer
