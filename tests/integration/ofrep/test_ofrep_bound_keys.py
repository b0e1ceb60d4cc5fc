"""An app key bound to one environment never reads another, through OFREP or ``GET /flags``.

Over real Redis and the daemon's HTTP server, with OpenFeature's published
Python provider and plain HTTP: ``checkout`` is killed in production and
completed (everyone on) in staging, so an answer read from staging shows.
A key bound to production is refused (403) whichever way a request names
staging: the path's prefix, the flag key (``checkout@staging``), single,
bulk or configuration, and ``GET /flags`` lists its own environment only;
its own environment it reads by every way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import httpx
import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from controller.adapters.http.app_access import AppAccess
from controller.adapters.redis.client import connect
from controller.core.release import Environments
from controller.core.rollouts.rollout import Phase
from controller.core.trust.app_keys import AppKey, Policy, Scope, by_digest, digest
from controller.settings import RedisSettings
from tests.support.clients.ofrep import flag_rollout, ofrep_server, store
from tests.support.clients.sse import sse

pytestmark = [pytest.mark.integration]

PRODUCTION = "rc_app_" + "p" * 43
STAGING = "rc_app_" + "s" * 43
ANYWHERE = "rc_app_" + "a" * 43
ENVIRONMENTS = Environments(names=("staging", "production"), default="production")
BODY = {"context": {"targetingKey": "unit-1"}}
REFUSED = "app key production-app (00000000000000e1) serves the production environment only"


def app_key(n: int, secret: str, environment: str | None) -> AppKey:
    return AppKey(
        id=f"00000000000000e{n}",
        name=f"{environment or 'any'}-app",
        scopes=frozenset({Scope.EVALUATE}),
        secret_sha256=digest(secret),
        created_ms=1,
        created_by="ana",
        environment=environment,
    )


@pytest.fixture
async def base(redis_url: str, redis_namespace: str) -> AsyncIterator[str]:
    """OFREP requiring keys, serving checkout killed in production and on in staging."""
    books = [
        app_key(1, PRODUCTION, "production"),
        app_key(2, STAGING, "staging"),
        app_key(3, ANYWHERE, None),
    ]

    async def keys() -> Mapping[str, AppKey]:
        return by_digest(books)

    access = AppAccess(keys, Policy(require_keys=True, origins=frozenset()))
    rollouts = [
        flag_rollout("checkout", 50.0, phase=Phase.KILLED),
        flag_rollout("checkout@staging", 100.0, phase=Phase.COMPLETED),
    ]
    async with connect(RedisSettings(url=redis_url)) as client:
        states = await store(client, redis_namespace, rollouts)
        async with ofrep_server(states, access=access, environments=ENVIRONMENTS) as url:
            yield url


async def call(base: str, secret: str, method: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        auth = {"Authorization": f"Bearer {secret}"}
        if method == "GET":
            return await client.get(path, headers=auth)
        return await client.post(path, json=BODY, headers=auth)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/ofrep/v1/evaluate/flags/checkout@staging"),
        ("POST", "/env/staging/ofrep/v1/evaluate/flags/checkout"),
        ("POST", "/env/staging/ofrep/v1/evaluate/flags/checkout@staging"),
        ("POST", "/env/production/ofrep/v1/evaluate/flags/checkout@staging"),
        ("POST", "/env/staging/ofrep/v1/evaluate/flags/checkout@production"),
        ("POST", "/env/staging/ofrep/v1/evaluate/flags"),
        ("GET", "/env/staging/ofrep/v1/configuration"),
    ],
)
async def test_a_key_bound_to_production_is_refused_staging_by_every_path(
    base: str, method: str, path: str
) -> None:
    answer = await call(base, PRODUCTION, method, path)
    assert answer.status_code == 403, answer.text
    assert answer.json()["errorCode"] == "GENERAL"
    assert answer.json()["errorDetails"] == f"{REFUSED}, not staging"
    assert "value" not in answer.json()


@pytest.mark.parametrize(
    ("secret", "path", "value"),
    [
        (PRODUCTION, "/ofrep/v1/evaluate/flags/checkout", False),
        (PRODUCTION, "/ofrep/v1/evaluate/flags/checkout@production", False),
        (PRODUCTION, "/env/production/ofrep/v1/evaluate/flags/checkout", False),
        (STAGING, "/ofrep/v1/evaluate/flags/checkout", True),  # its key names staging
        (STAGING, "/ofrep/v1/evaluate/flags/checkout@staging", True),
        (ANYWHERE, "/ofrep/v1/evaluate/flags/checkout@staging", True),
        (ANYWHERE, "/env/staging/ofrep/v1/evaluate/flags/checkout", True),
        (ANYWHERE, "/ofrep/v1/evaluate/flags/checkout", False),
    ],
)
async def test_each_key_reads_the_environments_it_serves(
    base: str, secret: str, path: str, value: bool
) -> None:
    answer = await call(base, secret, "POST", path)
    assert answer.status_code == 200, answer.text
    assert answer.json()["value"] is value


async def test_a_bound_keys_bulk_evaluation_holds_its_environments_flags_only(base: str) -> None:
    answer = await call(base, PRODUCTION, "POST", "/ofrep/v1/evaluate/flags")
    assert answer.status_code == 200, answer.text
    flags = answer.json()["flags"]
    assert [(f["key"], f["value"], f["reason"]) for f in flags] == [("checkout", False, "DISABLED")]


async def test_two_environments_named_at_once_is_no_flag(base: str) -> None:
    path = "/env/staging/ofrep/v1/evaluate/flags/checkout@production"
    answer = await call(base, ANYWHERE, "POST", path)
    assert answer.status_code == 404, answer.text
    assert answer.json()["errorCode"] == "FLAG_NOT_FOUND"
    assert "names the staging environment and the flag key production" in answer.text


@pytest.mark.parametrize(
    "path",
    [
        "/ofrep/v1/evaluate/flags/checkout@qa",
        "/env/qa/ofrep/v1/evaluate/flags/checkout",
    ],
)
async def test_a_flag_in_an_environment_not_served_is_ofreps_flag_not_found(
    base: str, path: str
) -> None:
    """OFREP's 404 for one flag is FLAG_NOT_FOUND (its document allows no other code)."""
    answer = await call(base, ANYWHERE, "POST", path)
    assert answer.status_code == 404, answer.text
    assert answer.json()["errorCode"] == "FLAG_NOT_FOUND"
    assert "unknown environment 'qa'" in answer.json()["errorDetails"]


async def test_the_python_provider_with_a_production_key_cannot_read_staging(base: str) -> None:
    def resolve(flag: str) -> list[object]:
        factory = lambda: {"Authorization": f"Bearer {PRODUCTION}"}  # noqa: E731
        api.set_provider(OFREPProvider(base, headers_factory=factory), "bound")
        found = api.get_client("bound").get_boolean_details(flag, True, EvaluationContext("u"))
        return [found.value, found.reason, found.error_code]

    try:
        staging = await asyncio.to_thread(resolve, "checkout@staging")
        production = await asyncio.to_thread(resolve, "checkout")
    finally:
        api.clear_providers()
    assert staging == [True, Reason.ERROR, ErrorCode.GENERAL]  # the code default, refused
    assert production == [False, Reason.DISABLED, None]


@pytest.mark.parametrize(
    ("secret", "flags"),
    [
        (PRODUCTION, ["checkout"]),
        (STAGING, ["checkout@staging"]),
        (ANYWHERE, ["checkout", "checkout@staging"]),
    ],
)
async def test_the_flag_list_holds_a_bound_keys_environment_only(
    base: str, secret: str, flags: list[str]
) -> None:
    listed = await call(base, secret, "GET", "/flags")
    assert listed.status_code == 200, listed.text
    assert sorted(s["flag"] for s in listed.json()) == flags
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        auth = {"Authorization": f"Bearer {secret}", "If-None-Match": listed.headers["ETag"]}
        again = await client.get("/flags", headers=auth)
    assert again.status_code == 304  # its own ETag, revalidated


async def test_event_streams_want_a_key_or_its_token_and_serve_its_environment_only(
    base: str,
) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        bulk = await client.post(
            "/ofrep/v1/evaluate/flags", json=BODY, headers={"Authorization": f"Bearer {STAGING}"}
        )
        uri = bulk.json()["eventStreams"][0]["endpoint"]["requestUri"]
        assert "token=00000000000000e2." in uri, uri
        assert STAGING not in uri  # the secret never goes into a URL
        async with sse(client, base + uri) as by_token:  # as a browser's EventSource: no header
            assert by_token.response.status_code == 200
        bare = await client.get("/ofrep/v1/events")
        assert bare.status_code == 401
        # A token opens its key's environment only, whichever way the path names another.
        moved = uri.replace("/ofrep/v1/events", "/env/production/ofrep/v1/events")
        elsewhere = await client.get(moved)
        assert elsewhere.status_code in (401, 403), elsewhere.text
        forged = await client.get(uri[: -len("0" * 8)] + "0" * 8)
        assert forged.status_code == 401
        production = await client.get(
            "/env/staging/ofrep/v1/events", headers={"Authorization": f"Bearer {PRODUCTION}"}
        )
        assert (production.status_code, production.json()["errorDetails"][:60]) == (
            403,
            REFUSED[:60],
        )
