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
