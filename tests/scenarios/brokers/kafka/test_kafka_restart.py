"""Apache Kafka killed with SIGKILL and started again with its data: nothing lost or doubled.

The embedded broker keeps nothing across a restart (``test_broker_lost_data.py`` plays
that, a real gap); Apache Kafka recovers its logs, so the daemon must take up where it
was: every event counted once, and no log-gap hold, since no offset moved backwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import KafkaBrokerFactory
from tests.scenarios.brokers.lost_broker import (
    FLAG,
    PARTITIONS,
    counted,
    held_alerts,
    lost_broker_world,
    ready,
    stored_offsets,
)
from tests.scenarios.harness import manual_plan

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_kafka_broker_killed_and_restarted_with_its_data_loses_and_doubles_nothing(
    kafka_broker_factory: KafkaBrokerFactory, redis_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    broker = kafka_broker_factory()
    async with lost_broker_world(broker.bootstrap, redis_url, redis_namespace, tmp_path) as (
        world,
        url,
    ):
        # Given a rollout whose apps have sent events that the broker acknowledged
        world.start_daemon()
        await world.start(FLAG, manual_plan())
        world.run_apps(FLAG, rate=2000)
        await world.until(lambda: world.events_sent >= 3000, timeout=60, what="events sent")
        await world.stop_apps()

        # When the broker is killed while the daemon may still be counting them, and
        # comes back on the same store and address
        broker.kill()
        broker.start()
        # and the apps send more once it is back
        world.run_apps(FLAG, rate=2000)
        sent_before = world.events_sent
        await world.until(
            lambda: world.events_sent >= sent_before + 2000, timeout=60, what="events sent again"
        )
        await world.stop_apps()
        total = world.events_sent

        # Then every event is counted exactly once
        async def all_counted() -> bool:
            assert await counted(world) == total
            return True

        await world.until(all_counted, timeout=90, what="every event counted once")
        # and no partition was held as if the log had lost records
        await world.until(lambda: ready(url), timeout=30, what="/readyz ready")
        assert held_alerts(world) == [], held_alerts(world)
        stored = await stored_offsets(world)
        assert all(stored[p] for p in range(PARTITIONS)), stored
        assert world.daemon.running, world.daemon.log_text()[-3000:]
