"""Two instances drain one flag's outbox at once, on a real Redis: nothing lost, nothing reordered.

The broker is stood in for by a recorder that takes a random few milliseconds
per publish (fault injection: the race needs the publish to be slow); the
outbox, its confirmation by entry id and the drain lease are the real Redis
scripts.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import orjson
import pytest

from controller.adapters.redis.aggregates import connect
from controller.adapters.redis.rollouts import RolloutStore
from controller.daemon.metrics import Metrics
from controller.daemon.outputs.outbox import Outbox
from controller.ports import OutboxMessage, StateWrite
from controller.settings import RedisSettings, TopicSettings

pytestmark = pytest.mark.integration
FLAG = "checkout"
VERSIONS = 60


class SlowBroker:
    """Records what is published, in the order the broker would have it."""

    def __init__(self, seed: int) -> None:
        self.log: list[int] = []
        self._rng = random.Random(seed)

    async def publish(self, messages: list[tuple[str, str, bytes]]) -> None:
        await asyncio.sleep(self._rng.uniform(0, 0.004))
        for _, _, value in messages:
            self.log.append(orjson.loads(value)["version"])


def outbox(store: RolloutStore, broker: SlowBroker) -> Outbox:
    return Outbox(
        states=store,
        outputs=broker,
        topics=TopicSettings(),
        metrics=Metrics(),
        clock=lambda: datetime.now(UTC),
        stopping=asyncio.Event(),
    )


def flag_state(version: int) -> OutboxMessage:
    value = orjson.dumps({"flag": FLAG, "version": version})
    return OutboxMessage(TopicSettings().flag_state, FLAG, value)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_two_instances_draining_one_flag_lose_and_reorder_nothing(
    redis_url: str, redis_namespace: str, seed: int
) -> None:
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    broker = SlowBroker(seed)
    async with connect(settings) as first, connect(settings) as second:
        owner = RolloutStore(first, settings=settings)
        other = RolloutStore(second, settings=settings)
        drains = [outbox(owner, broker), outbox(other, broker)]
        saved = asyncio.Event()

        async def owner_saves_and_drains() -> None:
            # The owner saves each new flag state and drains, as the engine does.
            for version in range(1, VERSIONS + 1):
                await owner.save(
                    FLAG, StateWrite(rev=-1, rollout=None, outbox=[flag_state(version)])
                )
                saved.set()
                await drains[0].drain(FLAG)

        async def another_instance_drains() -> None:
            # Another instance drains the same flag over and over (its start-up drain).
            await saved.wait()
            while len(set(broker.log)) < VERSIONS:
                await drains[1].drain(FLAG)
                await asyncio.sleep(0)

        await asyncio.wait_for(
            asyncio.gather(owner_saves_and_drains(), another_instance_drains()), timeout=60
        )
        assert await owner.pending(FLAG) == []
    # Every state was published, and a consumer never saw an older state after a newer one.
    assert set(broker.log) == set(range(1, VERSIONS + 1))
    assert broker.log == sorted(broker.log), broker.log
