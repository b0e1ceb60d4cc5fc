"""The key and origin guard on the HTTP routes for apps, and ``GET /app-keys``, in process."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager

import httpx
import pytest
from aiohttp import web

from controller.adapters.http.app_access import AppAccess, KeyListRoute
from controller.adapters.ofrep.routes import OfrepRoutes
from controller.core.reading.views import FlagStates
from controller.core.trust.app_keys import AppKey, Policy, Scope, by_digest, digest
from controller.core.wire import sent_object
from controller.ctl.operate.app_keys import command_of
from controller.settings import HttpSettings
from tests.support.app_client import app_client

SITE = "https://shop.example.com"
TOKEN = "admin-token"
KEYS = [
    AppKey(
        id="00000000000000a1",
        name="reader",
        scopes=frozenset({Scope.EVALUATE}),
        secret_sha256=digest("rc_app_reader"),
        created_ms=1,
        created_by="ana",
    ),
    AppKey(
        id="00000000000000a2",
        name="sender",
        scopes=frozenset({Scope.EVENTS}),
        secret_sha256=digest("rc_app_sender"),
        created_ms=2,
        created_by="ana",
    ),
]


@asynccontextmanager
async def served(
    outcomes: Counter[str], origins: Collection[str] = (SITE,)
) -> AsyncIterator[httpx.AsyncClient]:
    async def keys() -> Mapping[str, AppKey]:
        return by_digest(KEYS)

    async def listing() -> Collection[AppKey]:
        return KEYS

    async def states() -> FlagStates:
        return FlagStates([])

    access = AppAccess(
        keys,
        Policy(require_keys=True, origins=frozenset(origins)),
        count=lambda scope, outcome: outcomes.update([f"{scope}:{outcome}"]),
    )
    app = web.Application()
    OfrepRoutes(states, body_timeout_seconds=5, access=access).add_to(app.router)
    KeyListRoute(listing, token=TOKEN, loopback=True).add_to(app.router)
    async with app_client(app) as client:
        yield client


def auth(secret: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **more}


BULK = "/ofrep/v1/evaluate/flags"


@pytest.mark.parametrize(
    ("headers", "status", "outcome"),
    [
        ({}, 401, "no_key"),
        (auth("rc_app_nope"), 401, "unknown_key"),
        (auth("rc_app_sender"), 403, "wrong_scope"),
        (auth("rc_app_reader", Origin="https://evil.example"), 403, "origin"),
        (auth("rc_app_reader", Origin=SITE), 403, "server_key_in_browser"),
        (auth("rc_app_reader"), 200, None),
    ],
)
async def test_ofrep_refusals_are_ofreps_errors_with_the_reason(
    headers: dict[str, str], status: int, outcome: str | None
) -> None:
    outcomes: Counter[str] = Counter()
    async with served(outcomes) as client:
        answer = await client.post(BULK, json={"context": {"targetingKey": "u"}}, headers=headers)
    assert answer.status_code == status, answer.text
    if outcome is None:
        assert answer.json() == {"flags": []}
        assert not outcomes
        return
    assert answer.json()["errorCode"] == "GENERAL"
    assert answer.json()["errorDetails"]
    assert outcomes == {f"evaluate:{outcome}": 1}


async def test_preflight_answers_listed_origins_only() -> None:
    async with served(Counter()) as client:
        listed = await client.options(BULK, headers={"Origin": SITE})
        unlisted = await client.options(BULK, headers={"Origin": "https://evil.example"})
        single = await client.options(f"{BULK}/some.flag", headers={"Origin": SITE})
    assert (listed.status_code, listed.headers["Access-Control-Allow-Origin"]) == (204, SITE)
    assert "Authorization" in listed.headers["Access-Control-Allow-Headers"]
    assert listed.headers["Vary"] == "Origin"
    assert single.status_code == 204
    assert unlisted.status_code == 403
    assert "http.cors_origins" in unlisted.json()["errorDetails"]


@pytest.mark.parametrize("listed", ["HTTPS://Shop.Example.COM", "https://SHOP.example.com", SITE])
async def test_an_origin_listed_in_upper_case_admits_the_browsers_lower_case_origin(
    listed: str,
) -> None:
    # Browsers send scheme and host in lower case; the setting is read as they send it.
    origins = HttpSettings(cors_origins=[listed]).cors_origins
    async with served(Counter(), origins) as client:
        preflight = await client.options(BULK, headers={"Origin": SITE})
        body = {"context": {"targetingKey": "u"}}
        answer = await client.post(BULK, json=body, headers=auth("rc_app_reader", Origin=SITE))
    assert (preflight.status_code, preflight.headers["Access-Control-Allow-Origin"]) == (204, SITE)
    assert answer.status_code == 403  # past the origin check: a server key in a browser
    assert "server key" in answer.json()["errorDetails"]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [(SITE, SITE), ("https://evil.example", None), (None, None)],
)
async def test_a_refusal_carries_cors_headers_for_a_listed_origin_only(
    origin: str | None, allowed: str | None
) -> None:
    # A page on a listed origin reads why it was refused; any other origin learns nothing
    headers = auth("rc_app_unknown") if origin is None else auth("rc_app_unknown", Origin=origin)
    async with served(Counter()) as client:
        answer = await client.post(BULK, json={"context": {"targetingKey": "u"}}, headers=headers)
    assert answer.status_code in (401, 403), answer.text
    assert answer.headers.get("Access-Control-Allow-Origin") == allowed
    assert (answer.headers.get("Vary") == "Origin") == (allowed is not None)


async def test_the_key_list_takes_the_admin_token_and_never_an_app_key() -> None:
    async with served(Counter()) as client:
        with_key = await client.get("/app-keys", headers=auth("rc_app_reader"))
        with_token = await client.get("/app-keys", headers=auth(TOKEN))
    assert with_key.status_code == 401
    assert [k["name"] for k in with_token.json()["keys"]] == ["reader", "sender"]
    assert "secret_sha256" not in with_token.text
    assert digest("rc_app_reader") not in with_token.text


def test_a_create_command_carries_the_hash_never_the_secret() -> None:
    secret = "rc_app_" + "s" * 43
    made = command_of("create", "api", actor="ana", key_id="ops", secret=secret, scopes=["events"])
    assert made.secret_sha256 == digest(secret)
    assert secret not in str(sent_object(made))
    revoke = command_of("revoke", "api", actor="ana", key_id="ops")
    assert "secret_sha256" not in sent_object(revoke)
