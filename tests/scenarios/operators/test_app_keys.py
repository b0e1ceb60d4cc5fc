"""App keys through the daemon: made and revoked by signed commands, and every hostile request
to OFREP and ``POST /v1/events`` (no key, a bad, revoked or wrong-scope key, a browser origin
not on the list, a server key in a browser, a flood past the rate) a clear 4xx with a reason,
the controller alive, and nothing counted that was refused.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.core.trust import signing
from controller.core.wire import sent_object
from controller.ctl.operate.app_keys import command_of
from controller.ctl.operate.commands import write_private_key
from controller.settings import RedisSettings
from tests.integration.http.test_http import wait_status
from tests.integration.http.test_http_intake import events
from tests.scenarios.harness import KEY_ID, Scenario
from tests.scenarios.operators.test_rolloutctl import Result
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
SITE = "https://shop.example.com"
TOKEN = "admin-token-for-the-console-and-webhooks"
SECRETS = {"api": "rc_app_api-secret", "reader": "rc_app_reader-secret", "web": "rc_client_web"}


class Keys:
    """Makes and revokes app keys with the scenario's operator key; waits for each decision."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario

    async def decided(self, action: str, target: str, **options: Any) -> dict[str, Any]:
        command = command_of(action, target, actor="tester", key_id=KEY_ID, **options)
        return await self.sent(sent_object(signing.sign_command(command, self.scenario.key)))

    async def sent(self, command: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = await self.scenario.decided(
            command,
            flag="app-keys",
            what=f"the decision on {command['action']} {command['target']}",
        )
        return found


def bearer(name: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[name]}", **headers}


async def counted(scenario: Scenario, flag: str) -> int:
    async with connect(RedisSettings(url=scenario.redis_url)) as client:
        store = RedisAggregateStore(
            client,
            settings=RedisSettings(key_prefix=scenario.prefix),
            topic=scenario.topics["events"],
        )
        agg = await store.read(flag, {1})
        # Every event is one of these (a crash event counts among the exceptions too).
        return sum(
            a.exposures + a.requests + a.conversions + a.exceptions
            for a in (agg.treatment, agg.control)
        )


async def test_keys_are_made_and_revoked_by_commands_and_every_hostile_request_is_refused(
    scenario: Scenario,
) -> None:
    port = free_port()
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__REQUIRE_APP_KEYS="true",
        RC_HTTP__CORS_ORIGINS=f'["{SITE}"]',
        RC_HTTP__WEBHOOK_TOKEN=TOKEN,
        RC_HTTP__INTAKE_EVENTS_PER_SECOND="10",  # a burst of one full batch (500), then 10/s
    )
    scenario.start_daemon()
    base = f"http://127.0.0.1:{port}"
    await wait_status(f"{base}/healthz", 200)
    keys = Keys(scenario)

    # Given keys made by signed commands, audited on the decisions topic
    made = {
        "api": await keys.decided(
            "create", "api", secret=SECRETS["api"], scopes=["evaluate", "events"]
        ),
        "reader": await keys.decided(
            "create", "reader", secret=SECRETS["reader"], scopes=["evaluate"]
        ),
        "web": await keys.decided("create", "web", secret=SECRETS["web"], client=True),
    }
    assert {d["outcome"] for d in made.values()} == {"applied"}, made
    assert made["web"]["evidence"]["app_key"]["scopes"] == ["evaluate", "events"]
    forged = command_of("create", "forged", actor="x", key_id=KEY_ID, secret="s", scopes=["events"])
    rejected = await keys.sent(sent_object(signing.sign_command(forged, signing.generate_key()[0])))
    assert (rejected["outcome"], rejected["reason"]) == ("rejected", "bad signature")
    assert not any(SECRETS[n] in str(scenario.observed.decisions) for n in SECRETS)

    hostile = events(3, flag="hostile")
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def post(
            headers: dict[str, str], batch: list[dict[str, Any]] = hostile
        ) -> httpx.Response:
            return await client.post("/v1/events", json={"events": batch}, headers=headers)

        async def evaluate(headers: dict[str, str]) -> httpx.Response:
            body = {"context": {"targetingKey": "u1"}}
            return await client.post("/ofrep/v1/evaluate/flags", json=body, headers=headers)

        # When hostile requests come
        answers = {
            "events, no key": await post({}),
            "evaluate, no key": await evaluate({}),
            "events, bad key": await post({"Authorization": "Bearer rc_app_guessed"}),
            "events, basic auth": await post({"Authorization": "Basic dXNlcjpwYXNz"}),
            "events, evaluate-only key": await post(bearer("reader")),
            "events, unlisted origin": await post(bearer("web", Origin="https://evil.example")),
            "evaluate, unlisted origin": await evaluate(bearer("web", Origin="null")),
            "events, server key in a browser": await post(bearer("api", Origin=SITE)),
            "preflight, unlisted origin": await client.options(
                "/v1/events", headers={"Origin": "https://evil.example"}
            ),
            "events, oversized": await client.post(
                "/v1/events",
                content=b'{"events": [' + b" " * 2_000_000 + b"]}",
                headers=bearer("api", **{"Content-Type": "application/json"}),
            ),
            "events, deep": await client.post(
                "/v1/events",
                content=b'{"events": [' + b"[" * 10_000 + b"]" * 10_000 + b"]}",
                headers=bearer("api", **{"Content-Type": "application/json"}),
            ),
        }
        # App keys never open the console, the admin routes or the webhooks
        admin = {
            "app-keys list": await client.get("/app-keys", headers=bearer("api")),
            "console": await client.get("/ui", headers=bearer("web")),
            "webhook": await client.post(
                "/webhooks/monitor", json={"monitor": "m", "status": "down"}, headers=bearer("api")
            ),
        }
        # A browser on the list, with the client key: preflight, then evaluate and send
        preflight = await client.options(
            "/v1/events",
            headers={
                "Origin": SITE,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        browser_sent = events(4, flag="browser")
        from_browser = await post(bearer("web", Origin=SITE), browser_sent)
        browser_evaluates = await evaluate(bearer("web", Origin=SITE))
        server_evaluates = await evaluate(bearer("reader"))
        listing = await client.get("/app-keys", headers={"Authorization": f"Bearer {TOKEN}"})

        # A key revoked by command stops working without a restart
        revoked = await keys.decided("revoke", "api")
        again = await keys.decided("revoke", "api")

        # (within the book's reload, about a second, the key still works: counted as sent)
        probes_accepted: list[int] = []

        async def refused_once_revoked() -> httpx.Response:
            answer = await post(bearer("api"), events(3, flag="probe"))
            if answer.status_code == 202:
                probes_accepted.append(answer.json()["accepted"])
            assert answer.status_code == 401, answer.text
            return answer

        after_revoke = await scenario.until(
            refused_once_revoked, timeout=15, what="the revoked key refused"
        )

        # A flood past the key's rate: 429 with Retry-After, and only what was accepted counts
        flood_accepted = 0
        flood_answer = None
        for _ in range(5):
            answer = await post(bearer("web"), events(300, flag="flood"))
            if answer.status_code != 202:
                flood_answer = answer
                break
            flood_accepted += 300
        healthy = await client.get("/healthz")
        metrics = (await client.get("/metrics")).text

    # Then each is a clear 4xx with its reason
    statuses = {name: a.status_code for name, a in answers.items()}
    assert statuses == {
        "events, no key": 401,
        "evaluate, no key": 401,
        "events, bad key": 401,
        "events, basic auth": 401,
        "events, evaluate-only key": 403,
        "events, unlisted origin": 403,
        "evaluate, unlisted origin": 403,
        "events, server key in a browser": 403,
        "preflight, unlisted origin": 403,
        "events, oversized": 413,
        "events, deep": 400,
    }
    for name, answer in answers.items():
        body = answer.json()
        assert body.get("error") or body.get("errorDetails"), (name, body)
    assert "may not send events" in answers["events, evaluate-only key"].json()["error"]
    assert "http.cors_origins" in answers["events, unlisted origin"].json()["error"]
    assert "client key" in answers["events, server key in a browser"].json()["error"]
    assert "unknown app key" in answers["events, bad key"].json()["error"]
    assert {n: a.status_code for n, a in admin.items()} == {
        "app-keys list": 401,
        "console": 401,
        "webhook": 401,
    }
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == SITE
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert from_browser.status_code == 202, from_browser.text
    assert from_browser.headers["Access-Control-Allow-Origin"] == SITE
    assert browser_evaluates.status_code == 200, browser_evaluates.text
    assert server_evaluates.status_code == 200, server_evaluates.text
    shown = listing.json()["keys"]
    assert sorted(k["name"] for k in shown) == ["api", "reader", "web"]
    assert "secret_sha256" not in str(shown)
    assert revoked["outcome"] == "applied"
    assert (again["outcome"], "already revoked" in again["reason"]) == ("rejected", True)
    assert "revoked" in after_revoke.json()["error"]
    assert flood_answer is not None
    assert flood_answer.status_code == 429, flood_answer.text
    assert "Retry-After" in flood_answer.headers
    assert healthy.status_code == 200
    assert 'rollout_app_access_refused_total{outcome="wrong_scope",scope="events"}' in metrics

    # And nothing refused was counted: once the accepted events are in, the hostile are not
    await scenario.until(
        lambda: _at_least(scenario, "browser", len(browser_sent)), timeout=60, what="browser"
    )
    await scenario.until(
        lambda: _at_least(scenario, "flood", flood_accepted), timeout=60, what="the flood"
    )
    assert await counted(scenario, "flood") == flood_accepted
    await scenario.until(
        lambda: _at_least(scenario, "probe", sum(probes_accepted)), timeout=60, what="probes"
    )
    assert await counted(scenario, "probe") == sum(probes_accepted)
    assert await counted(scenario, "hostile") == 0


async def _at_least(scenario: Scenario, flag: str, n: int) -> bool:
    got = await counted(scenario, flag)
    assert got >= n, f"{got} of {n} {flag} events counted"
    return True


async def rolloutctl(scenario: Scenario, workdir: Path, port: int, *args: str) -> Result:
    """``rolloutctl`` of this checkout, in its own process, with the scenario's operator key."""
    key_file = workdir / f"{KEY_ID}.key"
    if not key_file.exists():
        write_private_key(key_file, scenario.key)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": scenario.bootstrap,
        "RC_TOPICS__COMMANDS": scenario.topics["commands"],
        "RC_TOPICS__DECISIONS": scenario.topics["decisions"],
        "ROLLOUTCTL_KEY": str(key_file),
        "ROLLOUTCTL_KEY_ID": KEY_ID,
        "ROLLOUTCTL_ACTOR": "ana",
        "ROLLOUTCTL_URL": f"http://127.0.0.1:{port}",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller.ctl.app",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def test_rolloutctl_makes_lists_and_revokes_keys_and_shows_a_secret_once(
    scenario: Scenario, tmp_path: Path
) -> None:
    # Given a controller on loopback: keys are not required, but a key sent is checked
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
    scenario.start_daemon()
    base = f"http://127.0.0.1:{port}"
    await wait_status(f"{base}/healthz", 200)

    async def ctl(*args: str) -> Result:
        return await rolloutctl(scenario, tmp_path, port, *args)

    # When an operator makes a browser key and a server key
    web = await ctl("app-key", "create", "shop-web", "--client", "--json")
    api = await ctl("app-key", "create", "api", "--scope", "events", "--reason", "JIRA-7")
    no_scope = await ctl("app-key", "create", "lonely")
    listed = await ctl("app-key", "list", "--json")
    table = await ctl("app-key", "list")

    # Then each secret is shown once, and never listed
    assert web.code == 0, web.err
    secret = web.json()["secret"]
    assert secret.startswith("rc_client_")
    assert web.json()["outcome"] == "applied"
    assert api.code == 0, api.err
    assert api.out.splitlines()[0].startswith("applied"), api.out
    assert api.out.splitlines()[1].startswith("rc_app_"), api.out
    assert "shown this once" in api.err
    assert (no_scope.code, "--scope" in no_scope.err) == (2, True)
    keys = {k["name"]: k for k in listed.json()["keys"]}
    assert set(keys) == {"shop-web", "api"}
    assert keys["shop-web"]["scopes"] == ["evaluate", "events"]
    assert keys["shop-web"]["client"] is True
    assert secret not in listed.out
    assert "secret_sha256" not in listed.out
    assert "shop-web" in table.out

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        headers = {"Authorization": f"Bearer {secret}"}
        sent = await client.post("/v1/events", json={"events": events(2, "cli")}, headers=headers)
        assert sent.status_code == 202, sent.text

        # And once revoked, the key is refused without a restart; a second revoke is rejected
        revoked = await ctl("app-key", "revoke", "shop-web")
        assert revoked.code == 0, revoked.err

        async def refused() -> httpx.Response:
            answer = await client.post(
                "/v1/events", json={"events": events(2, "cli")}, headers=headers
            )
            assert answer.status_code == 401, answer.text
            return answer

        await scenario.until(refused, timeout=15, what="the revoked key refused")
    twice = await ctl("app-key", "revoke", keys["shop-web"]["id"])
    assert twice.code == 3, (twice.out, twice.err)
    assert "already revoked" in twice.out


async def test_a_key_works_once_rolloutctl_made_it_and_its_revocation_line_says_so(
    scenario: Scenario, tmp_path: Path
) -> None:
    # Given a controller requiring keys whose book of keys was read before the key was made
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__REQUIRE_APP_KEYS="true")
    scenario.start_daemon()
    base = f"http://127.0.0.1:{port}"
    await wait_status(f"{base}/healthz", 200)
    body = {"context": {"targetingKey": "u1"}}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        guessed = await client.post(
            "/ofrep/v1/evaluate/flags", json=body, headers={"Authorization": "Bearer rc_app_x"}
        )
        assert guessed.status_code == 401, guessed.text  # the book is read, and held

        # When an operator makes a key with rolloutctl, and the app evaluates at once
        made = await rolloutctl(
            scenario, tmp_path, port, "app-key", "create", "api", "--scope", "evaluate", "--json"
        )
        assert made.code == 0, made.err
        secret = made.json()["secret"]
        auth = {"Authorization": f"Bearer {secret}"}
        first = await client.post("/ofrep/v1/evaluate/flags", json=body, headers=auth)
        single = await client.post("/ofrep/v1/evaluate/flags/any", json=body, headers=auth)

        # Then its very first evaluations are answered
        assert first.status_code == 200, first.text
        assert single.status_code == 404, single.text  # no such flag: the key was taken

        # And a revocation prints what it did, the verb once
        revoked = await rolloutctl(scenario, tmp_path, port, "app-key", "revoke", "api")
    assert revoked.code == 0, revoked.err
    key_id = made.json()["evidence"]["app_key"]["id"]
    line = f"applied: app-key revoke api -> id {key_id}, server key: evaluate"
    assert revoked.out.splitlines()[0] == line, revoked.out
