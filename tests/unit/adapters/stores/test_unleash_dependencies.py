"""The Unleash admin client's dependencies: read back with the feature, written before it serves."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import orjson
import pytest

from controller.adapters.unleash.answers import Unreadable, parse_feature
from controller.core.serving.dependencies import Dependency
from controller.core.serving.serving import Serving
from tests.unit.adapters.stores.test_unleash_admin import BASE, ENV, TARGET, admin, feature, ours

WANT = Serving(True, 25, "userId", 3, dependencies=(Dependency("f-parent", enabled=True),))


def test_the_dependencies_are_read_with_the_feature_sorted() -> None:
    body = feature(True, ours(rcFlagVersion="3")) | {
        "dependencies": [
            {"feature": "f-z", "enabled": False},
            {"feature": "f-a", "enabled": True, "variants": ["red", "blue"]},
        ]
    }
    actual = parse_feature(body, TARGET)
    assert actual.dependencies == (
        Dependency("f-a", enabled=True, variants=("blue", "red")),
        Dependency("f-z", enabled=False),
    )
    assert parse_feature(feature(True, ours()), TARGET).dependencies == ()


@pytest.mark.parametrize(
    "dependencies",
    ["x", [1], [{"enabled": True}], [{"feature": "p", "enabled": "yes"}]],
)
def test_dependencies_of_another_shape_are_unreadable(dependencies: Any) -> None:
    with pytest.raises(Unreadable, match="dependencies"):
        parse_feature(feature(True, ours()) | {"dependencies": dependencies}, TARGET)


async def test_a_new_feature_gets_its_dependencies_before_its_strategy_and_before_it_serves() -> (
    None
):
    calls: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content) if request.content else None
        calls.append((request.method, request.url.path, body))
        return httpx.Response(200, json={})

    async with admin(handler) as client:
        await client.write(TARGET, WANT, Serving(enabled=False, exists=False), flag="checkout")
    assert [(m, p) for m, p, _ in calls] == [
        ("POST", "/api/admin/projects/default/features"),
        ("POST", f"{BASE}/dependencies"),
        ("POST", f"{ENV}/strategies"),
        ("POST", f"{ENV}/on"),
    ]
    assert calls[1][2] == {"feature": "f-parent", "enabled": True, "variants": []}


async def test_only_the_dependencies_that_differ_are_written() -> None:
    calls: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content) if request.content else None
        calls.append((request.method, request.url.path, body))
        return httpx.Response(200, json={})

    actual = dataclasses.replace(
        WANT,
        strategy_id="s-1",
        dependencies=(Dependency("f-gone", enabled=True), Dependency("f-parent", enabled=False)),
    )
    async with admin(handler) as client:
        await client.write(TARGET, WANT, actual, flag="checkout")
        await client.write(TARGET, WANT, dataclasses.replace(WANT, strategy_id="s-1"), flag="c")
    assert [(m, p) for m, p, _ in calls] == [
        ("DELETE", f"{BASE}/dependencies/f-gone"),
        ("POST", f"{BASE}/dependencies"),
    ]
    assert calls[1][2] == {"feature": "f-parent", "enabled": True, "variants": []}


@pytest.mark.parametrize("status", [400, 403])
async def test_a_refused_dependency_leaves_the_feature_off_and_is_no_outage(status: int) -> None:
    calls: list[str] = []
    refusal = {"name": "InvalidOperationError", "message": "No active feature f-parent exists"}

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.url.path.endswith("/dependencies"):
            return httpx.Response(status, json=refusal)
        return httpx.Response(200, json={})

    async with admin(handler) as client:
        with pytest.raises(Exception, match="No active feature f-parent exists") as caught:
            await client.write(TARGET, WANT, Serving(enabled=False), flag="checkout")
    assert not getattr(caught.value, "retriable", True)
    assert f"POST {ENV}/on" not in calls


async def test_a_refused_token_is_still_an_outage() -> None:
    answer = {"name": "NoAccessError", "message": "You need permission"}
    async with admin(lambda _r: httpx.Response(403, json=answer)) as client:
        with pytest.raises(Exception, match="HTTP 403") as caught:
            await client.write(TARGET, WANT, Serving(enabled=False), flag="checkout")
    assert getattr(caught.value, "retriable", False)
