"""OFREP's per-client rate, in process: past it a 429 in OFREP's error shape, counted, with
``Retry-After`` a page on a listed origin can read; clients without a key are limited by
address, and the configuration route is not limited."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
from aiohttp import web

from controller.adapters.http.app_access import AppAccess
from controller.adapters.ofrep.routes import OfrepRoutes
from controller.core.reading.views import FlagStates
from controller.core.trust.app_keys import AppKey, Policy, Scope, by_digest, digest
from tests.support.app_client import app_client

SITE = "https://shop.example.com"
BULK = "/ofrep/v1/evaluate/flags"
ONE = "/ofrep/v1/evaluate/flags/some.flag"
BODY = {"context": {"targetingKey": "u"}}
CLIENT_KEY = AppKey(
    id="00000000000000d1",
    name="shop-web",
    scopes=frozenset({Scope.EVALUATE, Scope.EVENTS}),
    secret_sha256=digest("rc_client_shop"),
    created_ms=1,
    created_by="ana",
    client=True,
)


@asynccontextmanager
async def served(limited: Counter[str], *, require_keys: bool) -> AsyncIterator[httpx.AsyncClient]:
    async def keys() -> Mapping[str, AppKey]:
        return by_digest([CLIENT_KEY])

    async def states() -> FlagStates:
        return FlagStates([])

    access = AppAccess(keys, Policy(require_keys=require_keys, origins=frozenset({SITE})))
    app = web.Application()
    OfrepRoutes(
        states,
        body_timeout_seconds=5,
        access=access,
        requests_per_second=0.01,  # one request, then one every 100 s
        count_limited=lambda route: limited.update([route]),
    ).add_to(app.router)
    async with app_client(app) as client:
        yield client


async def test_a_browser_over_its_rate_reads_the_429_and_its_retry_after() -> None:
    limited: Counter[str] = Counter()
    headers = {"Authorization": "Bearer rc_client_shop", "Origin": SITE}
    async with served(limited, require_keys=True) as client:
        first = await client.post(BULK, json=BODY, headers=headers)
        bulk = await client.post(BULK, json=BODY, headers=headers)
        one = await client.post(ONE, json=BODY, headers=headers)
    assert first.status_code == 200, first.text
    assert (bulk.status_code, one.status_code) == (429, 429)
    assert bulk.json() == {
        "errorCode": "GENERAL",
        "errorDetails": "over this client's OFREP request rate; retry after Retry-After seconds",
    }
    assert one.json()["key"] == "some.flag"
    assert 1 <= int(bulk.headers["Retry-After"]) <= 100
    assert bulk.headers["Access-Control-Allow-Origin"] == SITE
    assert "Retry-After" in bulk.headers["Access-Control-Expose-Headers"]
    assert limited == {"bulk": 1, "one": 1}


async def test_without_a_key_the_address_is_limited_and_configuration_is_not() -> None:
    limited: Counter[str] = Counter()
    async with served(limited, require_keys=False) as client:
        answers = [await client.post(BULK, json=BODY) for _ in range(3)]
        configurations = [await client.get("/ofrep/v1/configuration") for _ in range(3)]
        keyed = await client.post(
            BULK, json=BODY, headers={"Authorization": "Bearer rc_client_shop"}
        )
    assert [a.status_code for a in answers] == [200, 429, 429]
    assert [c.status_code for c in configurations] == [200, 200, 200]
    assert keyed.status_code == 200  # a key has a bucket of its own
    assert limited == {"bulk": 2}
