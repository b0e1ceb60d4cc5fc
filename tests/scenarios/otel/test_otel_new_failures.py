"""A new exception in the new flow, named and rolled back, behind the real Collector on Kafka.

app → OTLP/HTTP → the Collector ``make otelcol`` builds (``ops/otelcol/config.yaml``) →
Apache Kafka → the daemon. The app (``tests/otel/cart_app.py``) uses only OpenFeature, its
OFREP provider and OpenTelemetry hook, and the OpenTelemetry SDK: each exception it meets is
recorded on the request's span by the SDK's ``span.record_exception``, stack trace and all.
In both flows the inventory call times out (``TimeoutError`` in ``reserve``, the request
fails) at the same rate. In the faulty twin's new flow alone, pricing a cart misses it
(``KeyError('cart-N')`` in ``price``) on some requests, which the app handles: the request
succeeds, so no error rate sees it. Both twins' plans guard ``error_rate`` and
``new_failures``.

The faulty twin is rolled back on ``new_failures``, its reason naming the failure by its type
and top frame, new in treatment, with an example whose cart number is scrubbed; the
decision's evidence, the HTTP status and ``rolloutctl status`` say the same. The twin whose
flows both meet both exceptions at the same rates completes.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from controller.core.rollouts.plan_parts import Guardrail
from controller.dev.otelcol import Collector
from tests.otel.load import AppProcess
from tests.scenarios.harness import Observed, Scenario
from tests.scenarios.otel.test_otel_apps import _guarded
from tests.scenarios.otel.test_otel_crashes import completing, held
from tests.scenarios.otel.worlds import collector_world, start_reading_otlp
from tests.scenarios.statistics.test_latency_at_the_preview import rolloutctl

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "tests" / "otel" / "cart_app.py"
FAULTY, TWIN = "cart.pricing-faulty", "cart.pricing"
GUARDRAILS = [Guardrail(metric="error_rate"), Guardrail(metric="new_failures")]
NEW = "KeyError in otel/cart_app.py:price"
"""The new failure's fingerprint: its type and the frame it was raised in."""
SHARED = "TimeoutError in otel/cart_app.py:reserve"
EXAMPLE = "KeyError: 'cart-<n>'"
"""``KeyError('cart-123')`` as the store keeps it: the cart's number scrubbed."""


@pytest.fixture
async def world(
    otelcol: Path, real_kafka: str, redis_url: str, redis_namespace: str, tmp_path: Path
) -> AsyncIterator[tuple[Scenario, Collector]]:
    """The operator's topics, a Collector writing spans to them, and a scenario whose daemon
    reads them."""
    async with collector_world(
        kafka=real_kafka,
        redis_url=redis_url,
        prefix=redis_namespace,
        workdir=tmp_path,
        label="nf",
        partitions={"events": 4, "commands": 2, "spans": 2},
    ) as made:
        yield made


async def served(base: str, flag: str) -> dict[str, Any]:
    """``GET /rollouts/FLAG``: what ``rolloutctl status FLAG`` reads."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        answer = await http.get(f"/rollouts/{flag}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _named(failures: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [seen for seen in failures if seen["name"] == name]
    assert len(found) == 1, (name, failures)
    return found[0]


@pytest.mark.timeout(300)
async def test_a_new_exception_in_the_new_flow_is_named_and_rolled_back_behind_the_collector(
    world: tuple[Scenario, Collector],
) -> None:
    scenario, collector = world
    base = start_reading_otlp(scenario)

    # Given two twins of a cart service exporting to the Collector: in both, 5% of requests
    # time out in either flow; in the faulty twin's new flow alone, 5% of requests miss the
    # cart's price (handled: the request succeeds); in the other, both flows miss it as often
    async def cart(flag: str, missing: str) -> AppProcess:
        traces = f"{collector.otlp_http_url}/v1/traces"
        command = [sys.executable, str(APP), base, traces, flag, "--timeouts", "0.05"]
        return await AppProcess.start([*command, "--missing", missing], name=flag)

    apps = {FAULTY: await cart(FAULTY, "0,0.05"), TWIN: await cart(TWIN, "0.05,0.05")}
    # When each is rolled out while users send it requests
    loads = await _guarded(scenario, apps, {FAULTY: held(GUARDRAILS), TWIN: completing(GUARDRAILS)})
    for flag, app in apps.items():
        said = orjson.loads(app.last_words)
        assert said["TimeoutError"] > 0, (flag, said)
        assert said["KeyError"] > 0, (flag, said)
        assert loads[flag].failures == 0, (flag, loads[flag].failed)
    # Then the twin whose flows fail alike completed, and the faulty one was rolled back on
    # the failure new in its treatment
    _assert_completed_alike(scenario.observed)
    _assert_rolled_back_naming_it(scenario.observed)
    # ... as the status the CLI reads says, and rolloutctl status under "what broke:"
    status = await served(base, FAULTY)
    assert status["evidence"]["failures"][0]["name"] == NEW, status
    text = (await rolloutctl(base, "status", FAULTY)).splitlines()
    broke = [line for line in text if line.strip().startswith("what broke:")]
    assert len(broke) == 1, text
    assert f"new in treatment: `{NEW}`" in broke[0], text
    # ... and says of the completed twin, with no control at 100%, that nothing broke
    assert "what broke:" not in await rolloutctl(base, "status", TWIN)


def _assert_completed_alike(observed: Observed) -> None:
    """The twin completed, both failures named at each stage that compared arms and neither
    regressed; at 100%, with no control, none is named (none is new in treatment)."""
    done = observed.decision_where(flag=TWIN, action="complete")
    assert done is not None, observed.decision_where(flag=TWIN, action="rollback")
    assert "failures" not in done["evidence"], done["evidence"]["failures"]
    advanced = [d for d in observed.decisions if d["flag"] == TWIN and d["action"] == "advance"]
    named = [seen for d in advanced for seen in d["evidence"].get("failures", [])]
    assert {seen["name"] for seen in named} == {NEW, SHARED}, advanced
    assert not any(seen["regressed"] for seen in named), named


def _assert_rolled_back_naming_it(observed: Observed) -> None:
    """The faulty twin rolled back on new_failures, its reason naming the new exception by
    its type and top frame, new in treatment, with a scrubbed example; its evidence the same,
    and the shared exception counted in both arms, not regressed."""
    rollback = observed.decision_where(flag=FAULTY, action="rollback")
    assert rollback is not None, observed.decision_where(flag=FAULTY)
    reason = rollback["reason"]
    assert rollback["evidence"]["breach"] == "new_failures", reason
    assert f"new in treatment: `{NEW}`" in reason, reason
    assert f"example: `{EXAMPLE}`" in reason, reason
    failures = rollback["evidence"]["failures"]
    first = failures[0]
    assert (first["name"], first["example"], first["control"]) == (NEW, EXAMPLE, 0), failures
    assert first["treatment"] > 0, failures
    assert first["regressed"] is True, failures
    shared = _named(failures, SHARED)
    assert min(shared["treatment"], shared["control"]) > 0, failures
    assert not shared["regressed"], failures
