"""OFREP per environment, in process: ``/env/staging/ofrep/v1/...`` answers the app's flag
names from the environment's states, the plain path the default environment's, and the SDK
with an environment serves every unit the same arm under the same key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from aiohttp import web

from controller.adapters.ofrep.routes import OfrepRoutes
from controller.core.reading.views import FlagStates, FlagStateView
from controller.core.release import Environments
from controller.core.wire import FlagState, FlagStatus
from controller.sdk.flags import FlagBook
from tests.support.app_client import app_client

ENVIRONMENTS = Environments(names=("dev", "staging", "production"), default="production")
BODY = {"context": {"targetingKey": "u-17"}}
STATES = {  # one flag: 10% in production, half on in staging, all on in dev
    "checkout": (FlagStatus.ROLLING_OUT, 10.0, 4),
    "checkout@staging": (FlagStatus.ROLLING_OUT, 50.0, 9),
    "checkout@dev": (FlagStatus.COMPLETED, 100.0, 2),
}


def view(flag: str) -> FlagStateView:
    status, percent, version = STATES[flag]
    return FlagStateView(
        flag=flag,
        version=version,
        status=status,
        percent=percent,
        salt="s",
        rollout_id="r",
        stage=0,
    )


@asynccontextmanager
async def served() -> AsyncIterator[httpx.AsyncClient]:
    async def states() -> FlagStates:
        return FlagStates([view(flag) for flag in STATES])

    app = web.Application()
    OfrepRoutes(states, body_timeout_seconds=5, environments=ENVIRONMENTS).add_to(app.router)
    async with app_client(app) as client:
        yield client


@pytest.mark.parametrize(
    ("prefix", "version", "flag_key"),
    [
        ("", 4, None),  # the default environment: the flag's own key
        ("/env/production", 4, None),
        ("/env/staging", 9, "checkout@staging"),
        ("/env/dev", 2, "checkout@dev"),
    ],
)
async def test_each_environment_answers_from_its_own_flag_states(
    prefix: str, version: int, flag_key: str | None
) -> None:
    async with served() as client:
        one = await client.post(f"{prefix}/ofrep/v1/evaluate/flags/checkout", json=BODY)
        bulk = await client.post(f"{prefix}/ofrep/v1/evaluate/flags", json=BODY)
    assert one.status_code == 200, one.text
    answer = one.json()
    assert answer["key"] == "checkout"
    assert answer["metadata"]["flag_version"] == version
    assert answer["metadata"].get("flagKey") == flag_key
    assert [f["key"] for f in bulk.json()["flags"]] == ["checkout"]
    # And the SDK in that environment serves the unit the same arm, under the same key
    book = FlagBook(
        [
            FlagState.model_validate(
                {"type": "flag_state", "v": 1, "id": f, "ts": 1, **view(f).served()}
            )
            for f in STATES
        ],
        # An app in the default environment names none: its flags keep their own keys
        environment=None if flag_key is None else prefix.removeprefix("/env/"),
    )
    found = book.evaluate("checkout", "u-17")
    assert (found.variant, found.version) == (answer["variant"], version)
    assert found.flag == (flag_key or "checkout")


async def test_an_environment_not_served_is_a_404_naming_those_that_are() -> None:
    async with served() as client:
        one = await client.post("/env/qa/ofrep/v1/evaluate/flags/checkout", json=BODY)
        bulk = await client.post("/env/qa/ofrep/v1/evaluate/flags", json=BODY)
    assert (one.status_code, bulk.status_code) == (404, 404)
    assert one.json()["errorDetails"] == (
        "unknown environment 'qa' (this controller serves dev, staging, production)"
    )
