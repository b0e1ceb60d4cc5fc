"""OFREP answers are never older than the snapshot's max age, however long nobody asked.

Over real Redis, with OpenFeature's published Python provider: a unit served
treatment, an idle stretch past the max age, the flag killed in the store,
and the very first request after it (single or bulk) answers the kill.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagEvaluationDetails

from controller.adapters.redis.client import connect
from controller.adapters.redis.rollouts import RolloutStore
from controller.core.rollouts.rollout import Phase
from controller.core.wire.bucketing import assign
from controller.ports import StateWrite
from controller.settings import RedisSettings
from tests.support.clients.ofrep import flag_rollout, ofrep_server, store

pytestmark = [pytest.mark.integration]

FLAG = "ofrep.fresh"
MAX_AGE = 0.5
IDLE = 3 * MAX_AGE
"""Nobody asks for this long: the snapshot held is then older than its max age."""
TREATED = next(
    unit
    for unit in (f"unit-{i}" for i in range(1000))
    if assign(FLAG, f"salt-{FLAG}", unit, 50.0).value == "treatment"
)


@pytest.fixture
async def served(redis_url: str, redis_namespace: str) -> AsyncIterator[tuple[str, RolloutStore]]:
    async with connect(RedisSettings(url=redis_url)) as client:
        states = await store(client, redis_namespace, [flag_rollout(FLAG, 50.0)])
        async with ofrep_server(states, max_age=MAX_AGE) as base:
            yield base, states


async def kill(states: RolloutStore) -> None:
    loaded = await states.load(FLAG)
    assert loaded.rollout is not None
    killed = loaded.rollout.model_copy(update={"phase": Phase.KILLED, "flag_version": 4})
    await states.save(FLAG, StateWrite(rev=loaded.rev, rollout=killed))


async def test_the_first_evaluation_after_an_idle_stretch_answers_a_kill_made_during_it(
    served: tuple[str, RolloutStore],
) -> None:
    base, states = served
    api.set_provider(OFREPProvider(base), "ofrep-fresh")
    client = api.get_client("ofrep-fresh")

    def resolve() -> FlagEvaluationDetails[bool]:
        return client.get_boolean_details(FLAG, False, EvaluationContext(TREATED))

    try:
        before = await asyncio.to_thread(resolve)
        assert (before.value, before.variant) == (True, "treatment")
        await asyncio.sleep(IDLE)
        await kill(states)
        first = await asyncio.to_thread(resolve)
    finally:
        api.clear_providers()
    assert (first.value, first.variant, first.reason, first.error_code) == (
        False,
        "control",
        "DISABLED",
        None,
    )


async def test_the_first_bulk_evaluation_after_an_idle_stretch_answers_a_kill_made_during_it(
    served: tuple[str, RolloutStore],
) -> None:
    base, states = served
    url = f"{base}/ofrep/v1/evaluate/flags"
    body = {"context": {"targetingKey": TREATED}}
    async with httpx.AsyncClient(timeout=30) as client:
        before = await client.post(url, json=body)
        assert [(f["key"], f["variant"]) for f in before.json()["flags"]] == [(FLAG, "treatment")]
        await asyncio.sleep(IDLE)
        await kill(states)
        first = await client.post(url, json=body, headers={"If-None-Match": before.headers["ETag"]})
    assert first.status_code == 200, first.text
    [flag] = first.json()["flags"]
    assert (flag["value"], flag["variant"], flag["reason"]) == (False, "control", "DISABLED")
