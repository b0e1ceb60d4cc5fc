"""Three daemons share a group; the one running a flag's rollout is killed mid-stage (kill -9).

Another instance takes the flag's commands partition over and gates the
rollout to the end: every event counted exactly once, one decision per
transition (a message republished after the crash keeps its id, so
consumers deduplicate it), and flag-state versions that never go backwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.adapters.kafka.admin import partition_for
from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.settings import RedisSettings
from tests.integration.rig import Rig
from tests.scenarios.harness import Scenario, fast_plan, scenario_topics
from tests.support.backing.services import free_port
from tests.support.controller_process import ControllerProcess
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FLAG = "checkout"
COMMANDS_PARTITIONS = 3


@pytest.fixture
async def world(
    kafka_bootstrap: str,
    redis_url: str,
    topic_factory: Callable[..., Awaitable[str]],
    redis_namespace: str,
    tmp_path: Path,
) -> AsyncIterator[Scenario]:
    topics = await scenario_topics(topic_factory, commands_partitions=COMMANDS_PARTITIONS)
    async with Scenario(
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        prefix=redis_namespace,
        topics=topics,
        workdir=tmp_path,
    ) as scenario:
        yield scenario


async def readiness(port: int) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5) as client:
        reply = await client.get(f"http://127.0.0.1:{port}/readyz")
    detail: dict[str, Any] = reply.json()
    return detail


async def owner_of(partition: int, ports: list[int], timeout: float = 60) -> int:
    """The HTTP port of the one daemon that owns commands ``partition``, once there is one."""

    async def one_owner() -> int:
        owners = [p for p in ports if partition in (await readiness(p))["commands_partitions"]]
        assert len(owners) == 1, f"owners of commands partition {partition}: {owners}"
        return owners[0]

    return await eventually(one_owner, timeout=timeout, what=f"one owner of {partition}")


async def counted(world: Scenario) -> int:
    async with connect(RedisSettings(url=world.redis_url)) as client:
        settings = RedisSettings(key_prefix=world.prefix)
        store = RedisAggregateStore(client, settings=settings, topic=world.topics["events"])
        agg = await store.read(FLAG, range(1, 20))
    return sum(arm.exposures + arm.requests for arm in (agg.treatment, agg.control))


async def test_killing_the_owner_mid_stage_moves_the_rollout_to_another_instance(
    world: Scenario, tmp_path: Path
) -> None:
    # Given three daemons sharing one group, each telling which partitions it owns
    daemons: dict[int, ControllerProcess] = {}
    for i in range(3):
        port = free_port()
        env = {**world.daemon_env(), "RC_HTTP__PORT": str(port)}
        daemon = ControllerProcess(env=env, log_path=tmp_path / f"d{i}.log")
        daemons[port] = daemon.start()
        daemon.wait_for_log("commands_partitions_assigned", timeout=60)
    try:
        wanted = partition_for(FLAG, COMMANDS_PARTITIONS)

        owner_port = await owner_of(wanted, list(daemons))
        # And a rollout running on the owner, with apps sending events
        world.run_apps(FLAG)
        await world.start(FLAG, fast_plan())
        await world.until(
            lambda: world.observed.decision_where(flag=FLAG, action="advance", stage=1),
            timeout=60,
            what="the first advance, made by the owner",
        )
        # When the owner is killed mid-stage
        daemons.pop(owner_port).kill()
        # Then another instance takes the flag over and gates it to the end
        done = await world.until(
            lambda: world.observed.decision_where(flag=FLAG, action="complete"),
            timeout=150,
            what="the rollout to complete on a surviving instance",
        )
        assert done["phase_after"] == "completed"
        assert await owner_of(wanted, list(daemons)) != owner_port
        # One decision per transition: a republished message keeps its id
        by_id = {d["id"]: d for d in world.observed.decisions if d["flag"] == FLAG}
        advances = sorted(d["stage"] for d in by_id.values() if d["action"] == "advance")
        assert advances == [1, 2, 3, 4], world.observed.decisions
        assert [d["action"] for d in by_id.values()].count("complete") == 1
        versions = [s["version"] for s in world.observed.flag_states if s["flag"] == FLAG]
        assert versions == sorted(versions)
        # And every event the apps sent is counted exactly once
        await world.stop_apps()
        rig = Rig(world.bootstrap, world.redis_url, world.topics["events"], "", world.prefix)
        await rig.settle()
        assert await counted(world) == world.events_sent
    finally:
        for daemon in daemons.values():
            daemon.kill()
