"""A killed parent turns its children off within a second on OFREP streams, and its kill
is recorded on each child's history.

The daemon on the real broker and Redis serves OFREP; a parent flag at 100% and a
child requiring it to serve treatment; an app holds the OFREP event stream the
bulk evaluation announces. The operator's signed kill of the parent goes on the
commands topic; from the moment that send returns, the app is told of a change
on its stream and its refetch evaluates the child ``PREREQUISITE_FAILED``, control,
within a second. The child's history (in Redis, as the console reads it) then holds a
decision naming the parent's kill, published on the decisions topic too.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from controller.adapters.redis.aggregates import connect
from controller.adapters.redis.history import RedisGateHistory
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.settings import HistorySettings, RedisSettings
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


async def history_of(scenario: Scenario, flag: str) -> list[dict[str, Any]]:
    """The decisions and alerts ``flag``'s history holds, oldest first."""
    async with connect(RedisSettings(url=scenario.redis_url)) as client:
        history = RedisGateHistory(
            client,
            settings=RedisSettings(key_prefix=scenario.prefix),
            history=HistorySettings(),
        )
        return [orjson.loads(m) for m in await history.messages(flag)]


def announced_uri(answer: Any) -> str:
    [announced] = answer["eventStreams"]
    return str(announced["endpoint"]["requestUri"])


async def child_off_after_kill(
    scenario: Scenario, client: httpx.AsyncClient, url: str
) -> tuple[float, dict[str, Any]]:
    """Hold the stream at ``url``, send the parent's signed kill, and follow the stream's
    events until a refetch serves the child ``PREREQUISITE_FAILED``: the seconds from the
    send's return to that answer, and the child's evaluation then."""
    base = url.partition("/ofrep/")[0]
    async with sse(client, url) as stream:
        assert stream.response.status_code == 200
        assert (await stream.next()).kind == "retry"
        await scenario.send(scenario.command("kill", PARENT, reason="errors"), flag=PARENT)
        sent = time.monotonic()
        while True:
            event = await stream.next_event()
            assert event.data["type"] == "refetchEvaluation", event
            child = child_of(await evaluated(client, base, event.data["etag"]))
            if child["reason"] == "PREREQUISITE_FAILED":
                return time.monotonic() - sent, child


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
        # When the operator kills the parent, signed, on the commands topic, while the app
        # holds the stream; then the stream tells it, and its refetch serves the child control
        took, child = await child_off_after_kill(scenario, client, base + announced_uri(answer))
    print(f"\nparent kill sent -> child off on the stream: {1000 * took:.0f} ms")
    assert (child["variant"], child["value"]) == ("control", False), child
    assert child["metadata"]["flag_version"] == 0, "no exposure of the child's rollout"
    assert took < WITHIN_SECONDS, f"the child turned off {took:.2f} s after the kill was sent"
    # And the child's history records the parent's kill, naming who and why
    record = await scenario.until(
        lambda: scenario.observed.decision_where(flag=CHILD, action="prerequisite_killed"),
        timeout=30,
        what="the child's record of its parent's kill",
    )
    assert (record["outcome"], record["phase_before"], record["phase_after"]) == (
        "recorded",
        "running",
        "running",
    )
    assert record["reason"].startswith(f"{PARENT}, a flag it requires, was killed by tester")
    assert "errors" in record["reason"]

    async def in_history() -> dict[str, Any]:
        [kept] = [m for m in await history_of(scenario, CHILD) if m["id"] == record["id"]]
        return kept

    kept = await eventually(in_history, timeout=30, what="the record in the child's history")
    assert kept["action"] == "prerequisite_killed"
    parents = [m for m in await history_of(scenario, PARENT) if m.get("type") == "decision"]
    assert "prerequisite_killed" not in {m["action"] for m in parents}
