"""Writing a ring plan's strategies to a scripted Unleash: in place, then new, then deleted."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from controller.adapters.unleash.answers import parse_feature
from controller.adapters.unleash.client import UnleashAdmin
from controller.core.common.errors import ControllerError
from controller.core.serving.serving import Serving, desired
from controller.settings import UnleashSettings
from tests.unit.core.serving.test_serving_rings import TARGET, rollout

SETTINGS = UnleashSettings(url="http://unleash", admin_token=SecretStr("*:*.secret"))
ENV = "/api/admin/projects/default/features/checkout/environments/production"


def _scripted(calls: list[tuple[str, str, Any]], known: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content) if request.content else None
        calls.append((request.method, request.url.path, body))
        if request.url.path == "/api/admin/context" and request.method == "GET":
            return httpx.Response(200, json=[{"name": n} for n in known])
        return httpx.Response(200, json={"id": f"new-{len(calls)}"})

    return httpx.MockTransport(handler)


def _feature(strategies: list[dict[str, Any]]) -> dict[str, Any]:
    env = {"name": "production", "enabled": True, "strategies": strategies}
    return {"name": "checkout", "environments": [env]}


def _as_unleash_answers(want: Serving) -> list[dict[str, Any]]:
    assert want.specs is not None
    return [
        {
            "id": f"s{i}",
            "name": "flexibleRollout",
            "constraints": [c.to_json() | {"values": list(c.values)} for c in spec.constraints],
            "parameters": {
                "rollout": str(spec.percent),
                "stickiness": "userId",
                "groupId": "checkout",
                "rcFlag": "checkout",
                "rcFlagVersion": str(want.version),
                **({"rcTargeting": want.targeting or ""} if i == 0 else {}),
            },
        }
        for i, spec in enumerate(want.specs)
    ]


async def test_a_new_ring_updates_in_place_creates_then_defines_fields_first() -> None:
    before, after = desired(rollout(1), TARGET), desired(rollout(2, version=4), TARGET)
    assert before is not None
    assert after is not None
    actual = parse_feature(_feature(_as_unleash_answers(before)), TARGET)
    assert actual == before  # read back as written
    calls: list[tuple[str, str, Any]] = []
    transport = _scripted(calls, known=["userId", "country", "plan"])
    async with UnleashAdmin(SETTINGS, transport=transport) as client:
        await client.write(TARGET, after, actual, flag="checkout")
    assert [(m, p) for m, p, _ in calls] == [
        ("GET", "/api/admin/context"),
        ("POST", "/api/admin/context"),
        ("PUT", f"{ENV}/strategies/s0"),
        ("PUT", f"{ENV}/strategies/s1"),
        ("PUT", f"{ENV}/strategies/s2"),
        ("POST", f"{ENV}/strategies"),
    ]
    assert calls[1][2]["name"] == "app_version"
    first = calls[2][2]
    assert first["parameters"]["rcFlagVersion"] == "4"
    assert orjson.loads(first["parameters"]["rcTargeting"])[0]["attribute"] == "country"
    assert {c[2]["parameters"]["groupId"] for c in calls[2:]} == {"checkout"}
    assert calls[5][2]["parameters"]["rollout"] == "50"


async def test_strategies_no_ring_needs_are_deleted_last() -> None:
    later, earlier = desired(rollout(2), TARGET), desired(rollout(0), TARGET)
    assert later is not None
    assert earlier is not None
    actual = parse_feature(_feature(_as_unleash_answers(later)), TARGET)
    calls: list[tuple[str, str, Any]] = []
    transport = _scripted(calls, known=["country", "plan", "app_version"])
    async with UnleashAdmin(SETTINGS, transport=transport) as client:
        await client.write(TARGET, earlier, actual, flag="checkout")
    assert [(m, p) for m, p, _ in calls] == [
        ("GET", "/api/admin/context"),
        ("PUT", f"{ENV}/strategies/s0"),
        ("DELETE", f"{ENV}/strategies/s1"),
        ("DELETE", f"{ENV}/strategies/s2"),
        ("DELETE", f"{ENV}/strategies/s3"),
    ]


async def test_undefined_context_fields_without_create_features_are_a_refusal() -> None:
    want = desired(rollout(0), TARGET)
    assert want is not None
    calls: list[tuple[str, str, Any]] = []
    settings = SETTINGS.model_copy(update={"create_features": False})
    async with UnleashAdmin(settings, transport=_scripted(calls, known=[])) as client:
        with pytest.raises(ControllerError, match="country, plan are not defined"):
            await client.write(TARGET, want, Serving(True), flag="checkout")
    assert [m for m, _, _ in calls] == ["GET"]
