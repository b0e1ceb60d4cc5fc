"""OpenFeature's own OFREP providers, for Python and Node, send an app key with their header
options, and a server that requires keys serves them; without the key they get OFREP's error."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import Reason

from controller.adapters.http.app_access import AppAccess
from controller.adapters.redis.client import connect
from controller.core.trust.app_keys import AppKey, Policy, Scope, by_digest, digest
from controller.core.wire.bucketing import assign
from controller.settings import RedisSettings
from tests.integration.ofrep.test_ofrep import ofrep_node  # noqa: F401 - a fixture
from tests.support.clients.ofrep import NODE_SCRIPT, flag_rollout, ofrep_server, store

pytestmark = [pytest.mark.integration]

FLAG = "ofrep.keyed"
SECRET = "rc_app_" + "k" * 43
UNITS = 200


@pytest.fixture
async def keyed(redis_url: str, redis_namespace: str) -> AsyncIterator[tuple[str, str]]:
    """An OFREP server that requires an app key: its base URL and the flag's salt."""
    key = AppKey(
        id="00000000000000b1",
        name="ofrep-app",
        scopes=frozenset({Scope.EVALUATE}),
        secret_sha256=digest(SECRET),
        created_ms=1,
        created_by="ana",
    )

    async def keys() -> Mapping[str, AppKey]:
        return by_digest([key])

    access = AppAccess(keys, Policy(require_keys=True, origins=frozenset()))
    async with connect(RedisSettings(url=redis_url)) as client:
        rollout = flag_rollout(FLAG, 50.0)
        states = await store(client, redis_namespace, [rollout])
        async with ofrep_server(states, access=access) as base:
            yield base, rollout.salt


async def test_the_python_provider_sends_the_key_from_its_headers_factory(
    keyed: tuple[str, str],
) -> None:
    base, salt = keyed

    def resolve(headers: dict[str, str] | None) -> list[Any]:
        factory = (lambda: headers) if headers is not None else None
        api.set_provider(OFREPProvider(base, headers_factory=factory), "ofrep-keys")
        client = api.get_client("ofrep-keys")
        return [
            client.get_boolean_details(FLAG, False, EvaluationContext(f"unit-{i}"))
            for i in range(UNITS)
        ]

    try:
        with_key = await asyncio.to_thread(resolve, {"Authorization": f"Bearer {SECRET}"})
        without = await asyncio.to_thread(resolve, None)
    finally:
        api.clear_providers()
    for i, details in enumerate(with_key):
        arm = assign(FLAG, salt, f"unit-{i}", 50.0)
        assert (details.variant, details.reason) == (arm.value, Reason.SPLIT), i
    assert {(d.value, d.reason) for d in without} == {(False, Reason.ERROR)}


async def test_the_node_provider_sends_the_key_from_its_headers(
    keyed: tuple[str, str],
    node: str,
    ofrep_node: Path,  # noqa: F811 - the fixture
) -> None:
    base, salt = keyed

    async def run(key: str | None) -> dict[str, Any]:
        env = {"OFREP_NODE_HOME": str(ofrep_node), "PATH": str(Path(node).parent)}
        done = await asyncio.to_thread(
            subprocess.run,
            [node, str(NODE_SCRIPT), base, str(UNITS), FLAG],
            capture_output=True,
            text=True,
            timeout=120,
            env=env | ({"OFREP_APP_KEY": key} if key else {}),
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        found: dict[str, dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
        return found[FLAG]

    with_key = await run(SECRET)
    without = await run(None)
    expected = [assign(FLAG, salt, f"unit-{i}", 50.0).value for i in range(UNITS)]
    assert (with_key["variants"], with_key["errors"]) == (expected, [])
    assert without["errors"], without


async def test_a_flooding_key_gets_429_with_retry_after_while_another_key_is_served(
    redis_url: str, redis_namespace: str
) -> None:
    other = "rc_app_" + "o" * 43
    books = [
        AppKey(
            id=f"00000000000000c{n}",
            name=f"app-{n}",
            scopes=frozenset({Scope.EVALUATE}),
            secret_sha256=digest(secret),
            created_ms=1,
            created_by="ana",
        )
        for n, secret in enumerate((SECRET, other))
    ]

    async def keys() -> Mapping[str, AppKey]:
        return by_digest(books)

    access = AppAccess(keys, Policy(require_keys=True, origins=frozenset()))
    body = {"context": {"targetingKey": "unit-1"}}
    async with connect(RedisSettings(url=redis_url)) as client:
        states = await store(client, redis_namespace, [flag_rollout(FLAG, 50.0)])
        # One request every 100 s: the bucket holds one, so the second is over the rate.
        async with (
            ofrep_server(states, access=access, requests_per_second=0.01) as base,
            httpx.AsyncClient(base_url=base) as http,
        ):

            async def post(secret: str, path: str) -> httpx.Response:
                auth = {"Authorization": f"Bearer {secret}"}
                return await http.post(path, json=body, headers=auth)

            one, bulk = f"/ofrep/v1/evaluate/flags/{FLAG}", "/ofrep/v1/evaluate/flags"
            flood = [await post(SECRET, path) for path in (one, one, bulk, one)]
            served = [await post(other, bulk), await post(other, one)]
    assert [answer.status_code for answer in flood] == [200, 429, 429, 429]
    limited = flood[1]
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["errorCode"] == "GENERAL"
    assert "rate" in limited.json()["errorDetails"]
    assert flood[2].json().keys() == {"errorCode", "errorDetails"}  # bulk: no flag key
    assert [answer.status_code for answer in served] == [200, 429]  # bulk counted as one
