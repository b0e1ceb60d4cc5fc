"""What OpenFeature's published OFREP providers cache and poll, against our ETags.

Over real Redis and real sockets: the daemon's HTTP server answers from the
store, and a flag served to everyone is killed in the store. The server
providers (Python's ``openfeature-provider-ofrep``, Node's
``@openfeature/ofrep-provider``) keep nothing: each evaluation is a request,
with no ETag, so the first evaluation after the server's snapshot holds the
kill serves it. The web provider, run on Node with polling, sends the ETag it
holds: a ``304`` keeps its values, and the kill is served from the poll that
first answers ``200``.

    python -m pytest -s tests/integration/ofrep/test_ofrep_provider_polling.py   # prints latencies
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import requests
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

from controller.adapters.redis.client import connect
from controller.adapters.redis.rollouts import RolloutStore
from controller.core.rollouts.rollout import Phase
from controller.ports import StateWrite
from controller.settings import RedisSettings
from tests.support.clients.follower import following
from tests.support.clients.ofrep import flag_rollout, ofrep_server, store
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration]

FLAG, UNIT = "ofrep.polled", "user-1"
POLL_MS = 300
ON: tuple[Any, ...] = (True, "treatment", "STATIC")
OFF: tuple[Any, ...] = (False, "control", "DISABLED")


@pytest.fixture
async def served(redis_url: str, redis_namespace: str) -> AsyncIterator[tuple[str, RolloutStore]]:
    async with connect(RedisSettings(url=redis_url)) as client:
        states = await store(client, redis_namespace, [flag_rollout(FLAG, 100.0)])
        async with ofrep_server(states) as base:  # snapshots at most 1 s old
            yield base, states


async def kill(states: RolloutStore) -> int:
    """Kill the flag in the store: when the write returned, in epoch milliseconds."""
    loaded = await states.load(FLAG)
    assert loaded.rollout is not None
    killed = loaded.rollout.model_copy(
        update={"phase": Phase.KILLED, "flag_version": loaded.rollout.flag_version + 1}
    )
    await states.save(FLAG, StateWrite(rev=loaded.rev, rollout=killed))
    return time.time_ns() // 1_000_000


def triple(served: dict[str, Any]) -> tuple[Any, ...]:
    return served["value"], served["variant"], served["reason"]


async def test_the_web_provider_on_node_keeps_its_values_on_304_and_serves_a_kill_at_the_next_poll(
    served: tuple[str, RolloutStore], node: str, js_client: Path
) -> None:
    base, states = served
    async with following(node, js_client, "poll", base, FLAG, UNIT, POLL_MS) as app:
        # Given the app served the flag on, and polling with the ETag of its first answer
        first = await app.serving("STATIC")
        assert triple(first) == ON

        def unchanged() -> list[dict[str, Any]]:
            polls = app.answers[1:]
            assert len(polls) >= 3, app.answers
            return polls

        polls = await eventually(unchanged, timeout=30, what="three polls answered")
        etag = app.answers[0]["etag"]
        assert etag
        # Then each poll sent that ETag, got a 304, and the app kept serving its values
        assert {(p["ifNoneMatch"], p["status"]) for p in polls} == {(etag, 304)}, polls
        assert [triple(s) for s in app.served] == [ON]

        # When the flag is killed
        killed_at = await kill(states)
        off = await app.serving("DISABLED")

    # Then the first poll answered 200 (with the old ETag sent) is the one that served it
    assert triple(off) == OFF
    lines = app.lines
    changed = next(
        i for i, line in enumerate(lines) if line.get("served", {}).get("reason") == "DISABLED"
    )
    [fresh] = [
        line["http"] for line in lines[:changed] if line.get("http", {}).get("status") == 200
    ][1:]
    assert (fresh["ifNoneMatch"], fresh["etag"] != etag) == (etag, True), fresh
    after = [line["http"]["status"] for line in lines[changed:] if "http" in line]
    assert set(after) <= {304}, after
    latency = off["at"] - killed_at
    print(f"\nweb provider on Node, polling every {POLL_MS} ms: kill -> served {latency} ms")


async def test_the_node_server_provider_keeps_nothing_and_serves_a_kill_at_once(
    served: tuple[str, RolloutStore], node: str, js_client: Path
) -> None:
    base, states = served
    async with following(node, js_client, "server", base, FLAG, UNIT, 50) as app:
        # Given the app evaluating the flag every 50 ms, served it on
        assert triple(await app.serving("STATIC")) == ON
        await eventually(lambda: len(app.answers) >= 5, timeout=30, what="five evaluations")
        # When the flag is killed
        killed_at = await kill(states)
        off = await app.serving("DISABLED")
    # Then it was served at once, each evaluation a request of its own, with no ETag
    assert triple(off) == OFF
    assert [triple(s) for s in app.served] == [ON, OFF]
    single = f"/ofrep/v1/evaluate/flags/{FLAG}"
    assert {(a["method"], a["path"], a["ifNoneMatch"], a["status"]) for a in app.answers} == {
        ("POST", single, None, 200)
    }
    print(f"\nNode server provider, every 50 ms: kill -> served {off['at'] - killed_at} ms")


async def test_the_python_provider_keeps_nothing_each_evaluation_is_a_request(
    served: tuple[str, RolloutStore],
) -> None:
    base, states = served
    provider = OFREPProvider(base, timeout=30)
    sent: list[requests.PreparedRequest] = []
    provider.session.hooks["response"].append(lambda r, *_, **__: sent.append(r.request))
    unit = EvaluationContext(UNIT)

    def evaluate() -> tuple[Any, ...]:
        got = provider.resolve_boolean_details(FLAG, False, unit)
        return got.value, got.variant, got.reason

    # Given five evaluations served the flag on: five requests, none with an ETag
    assert [await asyncio.to_thread(evaluate) for _ in range(5)] == [ON] * 5
    assert len(sent) == 5
    assert {(r.method, r.path_url, r.headers.get("If-None-Match")) for r in sent} == {
        ("POST", f"/ofrep/v1/evaluate/flags/{FLAG}", None)
    }

    # When the flag is killed, an evaluation serves it as soon as the server's snapshot does
    await kill(states)

    async def off() -> bool:
        assert await asyncio.to_thread(evaluate) == OFF
        return True

    await eventually(off, timeout=30, what="the Python provider serving the kill")
