"""A killed parent turns its children off within a second on OFREP streams.

The daemon on the real broker and Redis serves OFREP; a parent flag at 100% and a
child requiring it to serve treatment; an app holds the OFREP event stream the
bulk evaluation announces. The operator's signed kill of the parent goes on the
commands topic; from the moment that send returns, the app is told of a change
on its stream and its refetch evaluates the child ``PREREQUISITE_FAILED``, control,
within a second.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from tests.integration.http.test_http import wait_status
from tests.scenarios.harness import Scenario
from tests.support.backing.services import free_port
from tests.support.clients.sse import sse
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARENT, CHILD = "pk-checkout", "pk-upsell"
BODY = {"context": {"targetingKey": "user-1"}}
WITHIN_SECONDS = 1.0


def everyone(**extra: Any) -> Plan:
    """Treatment to every unit, for longer than the test."""
    stage = Stage(percent=100, min_duration=timedelta(minutes=10), min_units_per_arm=0)
    return Plan(name="all", stages=[stage], guardrails=[Guardrail(metric="error_rate")], **extra)


async def evaluated(client: httpx.AsyncClient, base: str, tag: str | None = None) -> Any:
    params = {} if tag is None else {"flagConfigEtag": tag}
    bulk = await client.post(f"{base}/ofrep/v1/evaluate/flags", json=BODY, params=params)
    assert bulk.status_code == 200, bulk.text
    return bulk.json()


def child_of(answer: Any) -> dict[str, Any]:
    [child] = [f for f in answer["flags"] if f["key"] == CHILD]
    return dict(child)


async def test_a_parents_kill_turns_the_child_off_on_an_ofrep_stream_within_1_s(
    scenario: Scenario,
) -> None:
    # Given the daemon serving OFREP, a parent at 100% and a child requiring its treatment
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
    scenario.start_daemon()
    base = f"http://127.0.0.1:{port}"
    await wait_status(f"{base}/healthz", 200)
    for flag, plan in (
        (PARENT, everyone()),
        (CHILD, everyone(requires=[{"flag": PARENT, "variants": ["treatment"]}])),
    ):
        started = await scenario.decided(
            scenario.command("start", flag, plan=plan), flag=flag, what=f"{flag} started"
        )
        assert started["outcome"] == "applied", started["reason"]
    async with httpx.AsyncClient(timeout=30) as client:

        async def child_served() -> Any:
            answer = await evaluated(client, base)
            child = child_of(answer)
            assert (child["variant"], child["value"]) == ("treatment", True), child
            return answer

        # ...and an app served the child, holding the event stream its answer announces
        answer = await eventually(child_served, timeout=30, what="OFREP to serve the child")
        [announced] = answer["eventStreams"]
        tag = announced["endpoint"]["requestUri"].rpartition("=")[2]
        async with sse(client, base + announced["endpoint"]["requestUri"]) as stream:
            assert stream.response.status_code == 200
            assert (await stream.next()).kind == "retry"
            # When the operator kills the parent, signed, on the commands topic
            await scenario.send(scenario.command("kill", PARENT, reason="errors"), flag=PARENT)
            sent = time.monotonic()
            # Then the stream tells the app, whose refetch serves the child control
            while True:
                event = await stream.next_event()
                assert event.data["type"] == "refetchEvaluation", event
                tag = event.data["etag"]
                child = child_of(await evaluated(client, base, tag))
                if child["reason"] == "PREREQUISITE_FAILED":
                    off = time.monotonic()
                    break
    took = off - sent
    print(f"\nparent kill sent -> child off on the stream: {1000 * took:.0f} ms")
    assert (child["variant"], child["value"]) == ("control", False), child
    assert child["metadata"]["flag_version"] == 0, "no exposure of the child's rollout"
    assert took < WITHIN_SECONDS, f"the child turned off {took:.2f} s after the kill was sent"
