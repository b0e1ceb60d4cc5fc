"""App keys bound to one environment, through the daemon: OFREP answers a bound key from
its environment (the key names it, not only the path), refuses it another one with the
reason, and its events must be its environment's flags'; a key for an environment the
controller does not serve is never made.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from controller.core.wire import sent_object
from controller.ctl.operate.commands import signed_model
from tests.integration.http.test_http import wait_status
from tests.integration.http.test_http_intake import events
from tests.scenarios.harness import KEY_ID, Scenario, manual_plan
from tests.scenarios.operators.test_app_keys import Keys
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "bound-flag"
DEV = "rc_app_dev-bound-secret"
ANY = "rc_app_every-environment-secret"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_a_key_bound_to_dev_evaluates_and_sends_in_dev_only(scenario: Scenario) -> None:
    # Given a controller serving dev and production, the flag rolling out in dev only
    port = free_port()
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__HOST="127.0.0.1",
        RC_HTTP__REQUIRE_APP_KEYS="true",
        RC_HTTP__OTLP_ENABLED="true",
        RC_ENGINE__ENVIRONMENTS='{"names": ["dev", "production"], "default": "production"}',
    )
    scenario.start_daemon()
    base = f"http://127.0.0.1:{port}"
    await wait_status(f"{base}/healthz", 200)
    start = sent_object(
        signed_model(
            "start",
            FLAG,
            private_key=scenario.key,
            key_id=KEY_ID,
            actor="tester",
            environment="dev",
            plan=manual_plan(),
        )
    )
    started = await scenario.decided(start, flag=FLAG, what="the rollout started in dev")
    assert started["outcome"] == "applied", started
    # ...and a key bound to dev, a key for every environment, and one for an unknown one
    keys = Keys(scenario)
    both = ["evaluate", "events"]
    dev = await keys.decided("create", "dev-app", secret=DEV, scopes=both, environment="dev")
    assert dev["outcome"] == "applied", dev
    assert dev["evidence"]["app_key"]["environment"] == "dev"
    anywhere = await keys.decided("create", "any-app", secret=ANY, scopes=both)
    assert anywhere["outcome"] == "applied", anywhere
    qa = await keys.decided(
        "create", "qa-app", secret="rc_app_qa-secret", scopes=both, environment="qa"
    )
    assert qa["outcome"] == "rejected"
    assert qa["reason"] == (
        "environment: unknown environment 'qa' (this controller serves dev, production)"
    )

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def evaluate(secret: str, prefix: str = "") -> httpx.Response:
            path = f"{prefix}/ofrep/v1/evaluate/flags/{FLAG}"
            body: dict[str, Any] = {"context": {"targetingKey": "u1"}}
            return await client.post(path, json=body, headers=bearer(secret))

        # When each key evaluates the flag with no environment in the path
        # Then the dev key is answered from dev; the other from production, which has none
        assert (await evaluate(DEV)).status_code == 200
        assert (await evaluate(ANY)).status_code == 404
        assert (await evaluate(ANY, "/env/dev")).status_code == 200
        # And the dev key is refused production with the reason
        refused = await evaluate(DEV, "/env/production")
        assert refused.status_code == 403
        assert refused.json()["errorDetails"] == (
            f"app key dev-app ({dev['evidence']['app_key']['id']}) serves the dev environment"
            " only, not production"
        )

        # When the dev key sends events of dev's flag, and of production's
        in_dev = await client.post(
            "/v1/events", json={"events": events(3, flag=f"{FLAG}@dev")}, headers=bearer(DEV)
        )
        in_production = await client.post(
            "/v1/events", json={"events": events(3, flag=FLAG)}, headers=bearer(DEV)
        )
        # Then dev's are taken, and production's refused, each naming why
        assert in_dev.status_code == 202, in_dev.text
        assert in_production.status_code == 400, in_production.text
        errors = in_production.json()["errors"]
        assert [(e["index"], e["reason"]) for e in errors] == [
            (i, "wrong_environment") for i in range(3)
        ]
        # And its telemetry, which names flags without environments, is refused too
        otlp = await client.post(
            "/v1/traces",
            content=b"{}",
            headers={**bearer(DEV), "Content-Type": "application/json"},
        )
        assert otlp.status_code == 403, otlp.text
        assert "telemetry counts for the default environment (production)" in otlp.text
    assert not any(secret in str(scenario.observed.decisions) for secret in (DEV, ANY))


TOKEN = "operator-token-of-the-bound-reads"
VERDICTS = "rc_app_dev-deploy-gate-secret"
READER = "rc_app_dev-reader-secret"


async def test_every_read_of_an_environments_data_honours_a_bound_keys_environment(
    scenario: Scenario,
) -> None:
    # Given the flag running in dev and killed in production, the operator token set
    port = free_port()
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__HOST="127.0.0.1",
        RC_HTTP__REQUIRE_APP_KEYS="true",
        RC_HTTP__WEBHOOK_TOKEN=TOKEN,
        RC_HTTP__READS_PER_SECOND="1000",  # the reads below come at once, from one address
        RC_ENGINE__ENVIRONMENTS='{"names": ["dev", "production"], "default": "production"}',
    )
    scenario.start_daemon()
    base = f"http://127.0.0.1:{port}"
    await wait_status(f"{base}/healthz", 200)

    async def command(action: str, environment: str, **options: Any) -> None:
        sent = sent_object(
            signed_model(
                action,
                FLAG,
                private_key=scenario.key,
                key_id=KEY_ID,
                actor="tester",
                environment=environment,
                **options,
            )
        )
        decided = await scenario.decided(sent, flag=FLAG, what=f"{action} in {environment}")
        assert decided["outcome"] == "applied", decided

    for environment in ("dev", "production"):
        await command("start", environment, plan=manual_plan())
    await command("kill", "production", reason="bad in production")
    # ...and a deploy gate's key and an app's key, each bound to dev
    keys = Keys(scenario)
    gate = await keys.decided(
        "create", "dev-gate", secret=VERDICTS, scopes=["verdicts"], environment="dev"
    )
    reader = await keys.decided(
        "create", "dev-reader", secret=READER, scopes=["evaluate"], environment="dev"
    )
    assert (gate["outcome"], reader["outcome"]) == ("applied", "applied")
    refusal = f"app key dev-gate ({gate['evidence']['app_key']['id']}) serves the dev"

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def read(path: str, secret: str) -> httpx.Response:
            return await client.get(path, headers=bearer(secret))

        # When the bound keys read each route that serves one environment's data
        verdicts = {
            "unnamed": await read(f"/rollouts/{FLAG}/verdict", VERDICTS),
            "dev": await read(f"/rollouts/{FLAG}@dev/verdict", VERDICTS),
            "production": await read(f"/rollouts/{FLAG}@production/verdict", VERDICTS),
            "unknown": await read(f"/rollouts/{FLAG}@qa/verdict", VERDICTS),
        }
        operator = {
            "unnamed": await read(f"/rollouts/{FLAG}/verdict", TOKEN),
            "dev": await read(f"/rollouts/{FLAG}@dev/verdict", TOKEN),
        }
        flags = await read("/flags", READER)
        others = {path: await read(path, VERDICTS) for path in ("/rollouts", "/flags")}

    # Then a bound key reads its environment's verdict, by the flag's name or its key there
    for name in ("unnamed", "dev"):
        answer = verdicts[name]
        assert answer.status_code == 200, (name, answer.text)
        assert (answer.json()["phase"], answer.json()["done"]) == ("running", False), name
    # And another environment's is refused with the reason, an unknown one not found
    assert verdicts["production"].status_code == 403, verdicts["production"].text
    assert verdicts["production"].json()["error"] == f"{refusal} environment only, not production"
    assert verdicts["unknown"].status_code == 404, verdicts["unknown"].text
    assert "unknown environment 'qa'" in verdicts["unknown"].json()["error"]
    # And the operator reads the flag's own name in the default environment, as ever
    assert operator["unnamed"].json()["phase"] == "killed"
    assert operator["dev"].json()["phase"] == "running"
    # And the flag list a bound key reads holds its environment's flags only
    assert flags.status_code == 200, flags.text
    assert [state["flag"] for state in flags.json()] == [f"{FLAG}@dev"]
    # And a verdicts key reads nothing else
    assert {path: a.status_code for path, a in others.items()} == {"/rollouts": 401, "/flags": 403}
