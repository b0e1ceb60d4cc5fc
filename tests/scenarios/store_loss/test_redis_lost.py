"""Redis killed and started empty while a rollout is at its third stage, on Apache Kafka.

The daemon runs on a Redis of its own with no persistence. The rollout is
promoted to its third stage (25%) and evidence of its split is counted; Redis
is killed and started again, empty. With no command typed, the flag is
rebuilt at its last decision within 30 s: served at 25% again, the same
rollout at its third stage, its evidence only of the rebuilt split (events
sent under the lost split's versions, counted again by ingest from the log,
are not its). Throughout, an app asks OFREP, ``GET /flags`` and ``/readyz``:
the flag is never unknown (404) nor served at another percent, readiness names
the degraded store and the flag during the gap, and one ``store_lost`` alert
names the loss, the flag and its stage.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from controller.dev.redis_server import RedisServer
from tests.conftest import RedisServerFactory
from tests.scenarios.harness import Scenario, manual_plan, topics_on
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FLAG = "checkout"


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
        topics=await topics_on(apache_kafka_bootstrap, "lost", events=2, commands=1),
        workdir=tmp_path,
    ) as scenario:
        port = free_port()
        scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
        scenario.start_daemon()
        yield World(scenario, redis, f"http://127.0.0.1:{port}")


@dataclass
class App:
    """An app asking OFREP and ``GET /flags`` for the flag, and ``/readyz``, every answer
    kept."""

    url: str
    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    states: list[tuple[int, dict[str, Any] | None]] = field(default_factory=list)
    ready: list[dict[str, Any]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def ask(self, client: httpx.AsyncClient) -> None:
        body = {"context": {"targetingKey": f"u-{len(self.answers)}"}}
        answer = await client.post(f"{self.url}/ofrep/v1/evaluate/flags/{FLAG}", json=body)
        self.answers.append((answer.status_code, answer.json() if answer.content else {}))
        flags = await client.get(f"{self.url}/flags")
        found = flags.json() if flags.status_code == 200 else []
        state = next((f for f in found if f["flag"] == FLAG), None)
        self.states.append((flags.status_code, state))
        self.ready.append((await client.get(f"{self.url}/readyz")).json())

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

    def served(self, version: int) -> bool:
        """Whether ``GET /flags`` served the flag at ``version`` or later."""
        return any(s is not None and s["version"] >= version for _, s in self.states)


async def _promote(world: Scenario, stage: int) -> None:
    decided = await world.decided(world.command("promote", FLAG), flag=FLAG, what="a promote")
    assert (decided["outcome"], decided["stage"]) == ("applied", stage), decided


async def _readyz(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{url}/readyz")
    body: dict[str, Any] = answer.json()
    return body


async def _exposures(world: Scenario, version: int, per_arm: int, run: str) -> None:
    """``per_arm`` exposures in each arm, as apps served ``version`` would send them."""
    for arm in ("treatment", "control"):
        for n in range(per_arm):
            unit = f"{run}-{arm}-{n}"
            event = {"type": "exposure", "v": 1, "id": f"{unit}-x", "ts": int(time.time() * 1000)}
            event |= {"flag": FLAG, "unit": unit, "arm": arm, "flag_version": version}
            await world.send_event(orjson.dumps(event), unit=unit)
    await world.flush()


async def _status(url: str) -> dict[str, Any] | None:
    """The rollout as status shows it; None while the read is refused (its read rate)."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{url}/rollouts/{FLAG}")
    body: dict[str, Any] | None = answer.json() if answer.status_code == 200 else None
    return body


async def _arms(url: str) -> dict[str, Any]:
    """The stage's evidence as status shows it: its versions and each arm's counts."""
    evidence: dict[str, Any] = ((await _status(url)) or {}).get("evidence") or {}
    return evidence


def _exposed(evidence: dict[str, Any]) -> tuple[int, int] | None:
    arms = evidence.get("arms") or {}
    if not arms:
        return None
    return arms["treatment"]["exposures"], arms["control"]["exposures"]


async def test_a_redis_that_comes_back_empty_is_rebuilt_without_an_operator(
    world: World,
) -> None:
    scenario, url = world.scenario, world.url
    # Given a rollout at its third stage (25%), with evidence of its split counted
    started = await scenario.decided(
        scenario.command("start", FLAG, plan=manual_plan()), flag=FLAG, what="start"
    )
    assert started["outcome"] == "applied", started
    await _promote(scenario, 1)
    await _promote(scenario, 2)
    before = await scenario.rollout(FLAG)
    assert before is not None
    await _exposures(scenario, before.flag_version, per_arm=40, run="old")
    await scenario.until(
        lambda: _counted(url, (40, 40)), timeout=30, what="the old split's evidence counted"
    )
    app = App(url)
    scenario.run("app", app.run())
    await scenario.until(
        lambda: before.flag_version in app.versions(), timeout=30, what="the stage served"
    )
    # When Redis is killed and started again without its data
    world.redis.kill()
    world.redis.start()
    # Then, with no command typed, the flag is served at its stage's percent again within
    # 30 s, rebuilt under a version above every one the lost rollout published
    await scenario.until(
        lambda: app.served(before.flag_version + 1), timeout=30, what="the flag rebuilt"
    )
    rebuilt = await scenario.rollout(FLAG)
    assert rebuilt is not None
    assert (rebuilt.rollout_id, rebuilt.phase.value, rebuilt.stage) == (
        before.rollout_id,
        "running",
        2,
    )
    assert rebuilt.salt == before.salt  # units keep their arms
    assert min(rebuilt.stage_flag_versions()) > before.flag_version
    # ...status shows the rollout at stage 3 with evidence only of its own split: the old
    # split's events, counted again from the log, are not its; its own are
    await _exposures(scenario, rebuilt.flag_version, per_arm=5, run="new")
    evidence = await scenario.until(
        lambda: _counted(url, (5, 5)), timeout=30, what="the rebuilt split's evidence counted"
    )
    assert min(evidence["flag_versions"]) > before.flag_version
    status = await scenario.until(lambda: _status(url), timeout=30, what="the rollout's status")
    assert (status["stage"], status["percent"]) == (2, 25.0), status
    # ...one alert named the loss, the flag and its stage
    alert = scenario.observed.alert_where(kind="store_lost")
    assert alert is not None, scenario.observed.alerts
    assert alert["details"]["flags"][FLAG]["stage"] == "stage 3/4 (25%)", alert
    assert f"{FLAG}: rollout {before.rollout_id} running at stage 3/4 (25%)" in alert["summary"]
    assert alert["details"]["rebuilding"] is True
    # ...and the app, asking all along, was never told the flag is unknown nor served
    # another percent; readiness named the degraded store and the flag during the gap
    asked = len(app.answers)
    await scenario.until(
        lambda: len(app.answers) >= asked + 5, timeout=30, what="the app served after"
    )
    app.stopping.set()
    assert [a["kind"] for a in scenario.observed.alerts].count("store_lost") == 1
    assert 404 not in {s for s, _ in app.answers}, [a for a in app.answers if a[0] == 404][:3]
    assert all(a.get("errorCode") != "FLAG_NOT_FOUND" for _, a in app.answers)
    assert all(state is not None for code, state in app.states if code == 200)
    assert {state["percent"] for code, state in app.states if state is not None} == {25.0}
    degraded = [r["degraded"] for r in app.ready if "degraded" in r]
    assert any(FLAG in d["flags"] or FLAG in d["rebuilding"] for d in degraded), app.ready[-3:]
    assert "degraded" not in app.ready[-1], app.ready[-1]


async def _counted(url: str, exposed: tuple[int, int]) -> dict[str, Any] | None:
    """The stage's evidence once it shows ``exposed`` exposures (treatment, control)."""
    evidence = await _arms(url)
    return evidence if _exposed(evidence) == exposed else None
