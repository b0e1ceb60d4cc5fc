"""A number flag's values reach OFREP with the type they were declared with.

Over real Redis and the daemon's HTTP server, with OpenFeature's published
Python provider, which checks a value's type: a float flag whose value is
whole (``1.0``) must arrive as a float, not ``1``, or every unit served it
gets the code default with ``TYPE_MISMATCH``; an integer flag stays integers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

from controller.adapters.redis.client import connect
from controller.core.wire.arm_values import ArmValues
from controller.core.wire.bucketing import assign
from controller.settings import RedisSettings
from tests.support.clients.ofrep import flag_rollout, ofrep_server, store

pytestmark = [pytest.mark.integration]

FLOATS = ("ofrep.float", {"type": "number", "control": 1.0, "treatment": 2.5})
WHOLE_FLOATS = ("ofrep.whole", {"type": "number", "control": 1.0, "treatment": 2.0})
MIXED = ("ofrep.mixed", {"type": "number", "control": 1, "treatment": 0.5})
INTEGERS = ("ofrep.int", {"type": "number", "control": 1, "treatment": 2})
UNITS = 40


@pytest.fixture
async def base(redis_url: str, redis_namespace: str) -> AsyncIterator[str]:
    rollouts = []
    for flag, values in (FLOATS, WHOLE_FLOATS, MIXED, INTEGERS):
        rollout = flag_rollout(flag, 50.0)
        plan = rollout.plan.model_copy(update={"values": ArmValues.model_validate(values)})
        rollouts.append(rollout.model_copy(update={"plan": plan}))
    async with connect(RedisSettings(url=redis_url)) as client:
        states = await store(client, redis_namespace, rollouts)
        async with ofrep_server(states) as url:
            yield url


def expected(flag: str, values: dict[str, Any], unit: str) -> Any:
    return values[assign(flag, f"salt-{flag}", unit, 50.0).value]


@pytest.mark.parametrize(("flag", "values"), [FLOATS, WHOLE_FLOATS, MIXED])
async def test_a_float_flag_resolves_as_floats_whole_or_not(
    base: str, flag: str, values: dict[str, Any]
) -> None:
    def resolve() -> list[Any]:
        api.set_provider(OFREPProvider(base), "numbers")
        client = api.get_client("numbers")
        units = (EvaluationContext(f"unit-{i}") for i in range(UNITS))
        return [client.get_float_details(flag, -1.0, unit) for unit in units]

    try:
        got = await asyncio.to_thread(resolve)
    finally:
        api.clear_providers()
    assert [(d.error_code, type(d.value)) for d in got] == [(None, float)] * UNITS
    assert [d.value for d in got] == [expected(flag, values, f"unit-{i}") for i in range(UNITS)]
    assert {d.variant for d in got} == {"control", "treatment"}


async def test_an_integer_flag_resolves_as_integers_and_the_bulk_keeps_each_type(
    base: str,
) -> None:
    flag, values = INTEGERS

    def resolve() -> list[Any]:
        api.set_provider(OFREPProvider(base), "numbers")
        client = api.get_client("numbers")
        units = (EvaluationContext(f"unit-{i}") for i in range(UNITS))
        return [client.get_integer_details(flag, -1, unit) for unit in units]

    try:
        got = await asyncio.to_thread(resolve)
    finally:
        api.clear_providers()
    assert [(d.error_code, type(d.value)) for d in got] == [(None, int)] * UNITS
    assert [d.value for d in got] == [expected(flag, values, f"unit-{i}") for i in range(UNITS)]
    async with httpx.AsyncClient(timeout=30) as client:
        body = {"context": {"targetingKey": "unit-1"}}
        answer = await client.post(f"{base}/ofrep/v1/evaluate/flags", json=body)
    raw = {f["key"]: f["value"] for f in answer.json()["flags"]}  # the wire's JSON, as read
    assert type(raw[INTEGERS[0]]) is int
    assert {type(raw[f]) for f, _ in (FLOATS, WHOLE_FLOATS, MIXED)} == {float}
