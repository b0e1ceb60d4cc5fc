"""What the store-loss scenarios share: an app asking for the flag all along, and the reads
and sends that put a rollout at a stage, lose its store and see it rebuilt."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from redis.crc import key_slot

from controller.core.rollouts.rollout import Rollout
from controller.dev.redis_cluster import SLOTS, RedisClusterServers
from controller.dev.redis_server import RedisServer
from tests.scenarios.harness import Scenario

FLAG = "checkout"


@dataclass
class World:
    scenario: Scenario
    redis: RedisServer
    url: str


@dataclass
class ClusterWorld:
    scenario: Scenario
    cluster: RedisClusterServers
    url: str
    prefix: str

    def master_of(self, key: str) -> RedisServer:
        """The master holding ``key``: each holds a third of the slots, in order."""
        return self.cluster.nodes[master_index(key)]


def master_index(key: str) -> int:
    """Which of 3 masters, each given a third of the slots in order, holds ``key``."""
    return min(key_slot(key.encode()) // (SLOTS // 3), 2)


def keys_of(prefix: str) -> dict[str, str]:
    """The keys whose masters the cluster scenarios lose, by what they hold: the store's
    identity, its set of the flags with a rollout, and the flag's own state."""
    return {
        "identity": f"{prefix}:store",
        "flag index": f"{prefix}:rollouts",
        "flag state": f"{{{prefix}:flag:{FLAG}}}:state",
    }


def spread_prefix() -> str:
    """A key prefix that puts each of :func:`keys_of`'s keys on another master."""
    while True:
        prefix = f"rc-lost-{uuid.uuid4().hex[:6]}"
        if len({master_index(k) for k in keys_of(prefix).values()}) == 3:
            return prefix


READY_ASKS = 8
"""``/readyz`` asked this many times, back to back, in each of the app's rounds."""


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
        # Readiness asked several times a round: a rebuild's gap can be shorter than a round
        for _ in range(READY_ASKS):
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

    def degraded(self) -> list[dict[str, Any]]:
        """Each ``degraded`` section ``/readyz`` answered."""
        return [r["degraded"] for r in self.ready if "degraded" in r]


async def promote(world: Scenario, stage: int) -> None:
    decided = await world.decided(world.command("promote", FLAG), flag=FLAG, what="a promote")
    assert (decided["outcome"], decided["stage"]) == ("applied", stage), decided


async def at_third_stage(world: Scenario, plan: Any) -> Rollout:
    """The flag's rollout of ``plan`` started and promoted to its third stage."""
    started = await world.decided(world.command("start", FLAG, plan=plan), flag=FLAG, what="start")
    assert started["outcome"] == "applied", started
    await promote(world, 1)
    await promote(world, 2)
    rollout = await world.rollout(FLAG)
    assert rollout is not None
    return rollout


async def served_at(world: Scenario, app: App, rollout: Rollout) -> None:
    """``app`` runs, and has been served ``rollout``'s stage."""
    world.run("app", app.run())
    await world.until(
        lambda: rollout.flag_version in app.versions(), timeout=30, what="the stage served"
    )


async def exposures(world: Scenario, version: int, per_arm: int, run: str) -> None:
    """``per_arm`` exposures in each arm, as apps served ``version`` would send them."""
    for arm in ("treatment", "control"):
        for n in range(per_arm):
            unit = f"{run}-{arm}-{n}"
            event = {"type": "exposure", "v": 1, "id": f"{unit}-x", "ts": int(time.time() * 1000)}
            event |= {"flag": FLAG, "unit": unit, "arm": arm, "flag_version": version}
            await world.send_event(orjson.dumps(event), unit=unit)
    await world.flush()


async def status(url: str) -> dict[str, Any] | None:
    """The rollout as status shows it; None while the read is refused (its read rate)."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{url}/rollouts/{FLAG}")
    body: dict[str, Any] | None = answer.json() if answer.status_code == 200 else None
    return body


async def counted(url: str, exposed: tuple[int, int]) -> dict[str, Any] | None:
    """The stage's evidence once it shows ``exposed`` exposures (treatment, control)."""
    evidence: dict[str, Any] = ((await status(url)) or {}).get("evidence") or {}
    arms = evidence.get("arms") or {}
    if not arms:
        return None
    seen = arms["treatment"]["exposures"], arms["control"]["exposures"]
    return evidence if seen == exposed else None


async def rebuilt_at_third_stage(world: Scenario, app: App, before: Rollout) -> Rollout:
    """The rollout, once ``app`` was served it rebuilt after the loss: the same rollout
    and salt at its third stage, under versions above every one the lost one published."""
    await world.until(
        lambda: app.served(before.flag_version + 1), timeout=30, what="the flag rebuilt"
    )
    rebuilt = await world.rollout(FLAG)
    assert rebuilt is not None
    assert (rebuilt.rollout_id, rebuilt.phase.value, rebuilt.stage) == (
        before.rollout_id,
        "running",
        2,
    )
    assert rebuilt.salt == before.salt  # units keep their arms
    assert min(rebuilt.stage_flag_versions()) > before.flag_version
    return rebuilt


async def served_throughout(world: Scenario, app: App, percent: float) -> None:
    """``app``, asking on a while after the rebuild, and then stopped, was never told the
    flag is unknown (a 404, ``FLAG_NOT_FOUND``) nor served it at another percent."""
    asked = len(app.answers)
    await world.until(
        lambda: len(app.answers) >= asked + 5, timeout=30, what="the app served after"
    )
    app.stopping.set()
    assert 404 not in {s for s, _ in app.answers}, [a for a in app.answers if a[0] == 404][:3]
    assert all(a.get("errorCode") != "FLAG_NOT_FOUND" for _, a in app.answers)
    assert all(state is not None for code, state in app.states if code == 200)
    assert {state["percent"] for code, state in app.states if state is not None} == {percent}
