"""Redis killed and started empty while a rollout is at its third stage, on Apache Kafka.

The daemon runs on a Redis of its own with no persistence. The rollout is
promoted to its third stage (25%); Redis is killed and started again, empty.
Throughout, an app asks OFREP for the flag: it is never told the flag is
unknown (404), and is served the flag's last state. The daemon tells the loss
once (a ``store_lost`` alert naming the flag and its stage) and ``/readyz``
names the degraded store and the flag.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controller.dev.redis_server import RedisServer
from tests.conftest import RedisServerFactory
from tests.scenarios.harness import TOPICS, Scenario, manual_plan
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FLAG = "checkout"


async def _topics(bootstrap: str) -> dict[str, str]:
    partitions = {"events": 2, "commands": 1} | {n: 1 for n in TOPICS if n != "commands"}
    names = {key: f"t-lost-{key}-{uuid.uuid4().hex[:8]}" for key in partitions}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(names[k], n, replication_factor=1) for k, n in partitions.items()]
        )
    finally:
        await admin.close()
    return names


@dataclass
class World:
    scenario: Scenario
    redis: RedisServer
    url: str


@pytest.fixture
async def world(
    apache_kafka_bootstrap: str, redis_server_factory: RedisServerFactory, tmp_path: Path
) -> AsyncIterator[World]:
    """The daemon on Apache Kafka and a Redis of its own that keeps nothing on disk."""
    redis = redis_server_factory(persistent=False)
    async with Scenario(
        bootstrap=apache_kafka_bootstrap,
        redis_url=redis.url,
        prefix=f"rc-lost-{uuid.uuid4().hex[:6]}",
        topics=await _topics(apache_kafka_bootstrap),
        workdir=tmp_path,
    ) as scenario:
        port = free_port()
        scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
        scenario.start_daemon()
        yield World(scenario, redis, f"http://127.0.0.1:{port}")


@dataclass
class App:
    """An app asking OFREP for the flag, every answer kept."""

    url: str
    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def ask(self, client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
        body = {"context": {"targetingKey": f"u-{len(self.answers)}"}}
        answer = await client.post(f"{self.url}/ofrep/v1/evaluate/flags/{FLAG}", json=body)
        kept = (answer.status_code, answer.json() if answer.content else {})
        self.answers.append(kept)
        return kept

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            while not self.stopping.is_set():
                try:
                    await self.ask(client)
                except httpx.TransportError:
                    self.answers.append((0, {}))
                await asyncio.sleep(0.05)  # an app's polling pace, not a wait for an outcome

    def versions(self) -> set[object]:
        return {a.get("metadata", {}).get("flag_version") for s, a in self.answers if s == 200}


async def _promote(world: Scenario, stage: int) -> None:
    decided = await world.decided(world.command("promote", FLAG), flag=FLAG, what="a promote")
    assert (decided["outcome"], decided["stage"]) == ("applied", stage), decided


async def _readyz(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{url}/readyz")
    body: dict[str, Any] = answer.json()
    return body


async def test_a_redis_that_comes_back_empty_never_unserves_the_flag(world: World) -> None:
    scenario = world.scenario
    # Given a rollout at its third stage (25%), served over OFREP
    started = await scenario.decided(
        scenario.command("start", FLAG, plan=manual_plan()), flag=FLAG, what="start"
    )
    assert started["outcome"] == "applied", started
    await _promote(scenario, 1)
    await _promote(scenario, 2)
    before = await scenario.rollout(FLAG)
    assert before is not None
    app = App(world.url)
    scenario.run("app", app.run())
    await scenario.until(
        lambda: before.flag_version in app.versions(), timeout=30, what="the stage served"
    )
    # When Redis is killed and started again without its data
    world.redis.kill()
    world.redis.start()
    # Then one alert names the loss, the flag and its stage
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(kind="store_lost"),
        timeout=30,
        what="the store_lost alert",
    )
    assert FLAG in alert["details"]["flags"], alert
    assert alert["details"]["flags"][FLAG]["stage"] == "stage 3/4 (25%)", alert
    assert f"{FLAG}: rollout {before.rollout_id} running at stage 3/4 (25%)" in alert["summary"]
    # ...readiness names the degraded store and the flag
    ready = await _readyz(world.url)
    assert FLAG in ready["degraded"]["flags"], ready
    # ...and the app, asking all along, was never told the flag is unknown
    served = len(app.answers)
    await scenario.until(
        lambda: sum(s == 200 for s, _ in app.answers[served:]) >= 20,
        timeout=30,
        what="the app served after the loss was told",
    )
    app.stopping.set()
    statuses = {s for s, _ in app.answers}
    assert 404 not in statuses, [a for a in app.answers if a[0] == 404][:3]
    assert all(a.get("errorCode") != "FLAG_NOT_FOUND" for _, a in app.answers)
    after = [a for s, a in app.answers[served:] if s == 200]
    assert {a["metadata"]["flag_version"] for a in after} == {before.flag_version}
    assert [a["kind"] for a in scenario.observed.alerts].count("store_lost") == 1
