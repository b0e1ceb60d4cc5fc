"""The broker comes back without its data, under a counted rollout.

The test owns its broker on a fixed port (a fresh Apache Kafka node each start, or
tansu with memory storage), so a restart brings it back empty at the address the
daemon knows. The daemon
creates its topics again, finds every events partition's stored offset beyond
the new log's end and holds them: a critical alert per partition, ``/readyz``
not ready, and the events sent meanwhile are not counted (nor skipped as if
counted) until an operator chooses. ``rolloutctl ingest reread`` then counts
them from the new log's start, and ``rolloutctl kill`` finds its topics.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.scenarios.brokers.lost_broker import (
    FLAG,
    PARTITIONS,
    RestartableBroker,
    counted,
    held_alerts,
    lost_broker_world,
    ready,
    readyz,
    rolloutctl,
    stored_offsets,
    topics_exist,
)
from tests.scenarios.harness import manual_plan

# A fresh Apache Kafka node takes 10 to 20 s to start on a busy machine, more than once here.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


async def test_a_broker_back_without_its_data_holds_ingest_until_an_operator_decides(
    restartable_broker: RestartableBroker,
    redis_url: str,
    redis_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = restartable_broker
    async with lost_broker_world(
        broker.bootstrap, redis_url, redis_namespace, tmp_path, RC_INGEST__STALL_AFTER_SECONDS="600"
    ) as (world, url):
        # Given a rollout whose events are counted, every one of them
        world.start_daemon()
        await world.start(FLAG, manual_plan())
        world.run_apps(FLAG, rate=2000)
        await world.until(lambda: world.events_sent >= 3000, timeout=60, what="events sent")
        await world.stop_apps()
        before = world.events_sent

        async def all_counted() -> bool:
            assert await counted(world) == before
            return True

        await world.until(all_counted, timeout=60, what="every event counted")
        stored = await stored_offsets(world)
        assert all(stored[p] for p in range(PARTITIONS)), stored

        # When the broker restarts without its data
        broker.lose_data()

        # Then the daemon creates its topics again, as configured
        await world.until(
            lambda: topics_exist(broker.bootstrap, world.topics),
            timeout=30,
            what="the topics created again",
        )
        # and holds every events partition, with a critical alert for each
        alerts = await world.until(
            lambda: held_alerts(world) if len(held_alerts(world)) == PARTITIONS else None,
            timeout=60,
            what="an events_log_gap alert per partition",
        )
        for alert in alerts:
            partition = alert["details"]["partition"]
            assert alert["severity"] == "critical", alert
            assert alert["details"]["stored_offset"] == stored[partition], alert
            assert alert["details"]["end"] < stored[partition], alert
        # and /readyz is not ready, naming them
        status, body = await readyz(url)
        assert status == 503, body
        assert "held" in body["reason"], body
        assert all(f"p{p}:" in body["reason"] for p in range(PARTITIONS)), body

        # When apps send events to the new log while the partitions are held
        world.run_apps(FLAG, rate=2000)
        await world.until(
            lambda: world.events_sent >= before + 2000, timeout=60, what="events sent again"
        )
        await world.stop_apps()
        after = world.events_sent - before
        # Then none of them is counted, nor skipped as if counted, without a decision
        assert await counted(world) == before
        assert await stored_offsets(world) == stored
        status, body = await readyz(url)
        assert status == 503, body

        # When an operator chooses to count the new log from its start
        code = await asyncio.to_thread(
            rolloutctl, world, tmp_path / "keys", monkeypatch, "ingest", "reread"
        )
        assert code == 0, world.daemon.log_text()[-3000:]
        decision = await world.until(
            lambda: world.observed.decision_where(kind="ingest", outcome="applied"),
            timeout=30,
            what="the ingest decision",
        )
        assert decision["evidence"]["partitions"] == list(range(PARTITIONS)), decision

        # Then every event sent since the restart is counted, once
        async def counted_again() -> bool:
            assert await counted(world) == before + after
            return True

        await world.until(counted_again, timeout=60, what="the new log counted")
        # and the daemon is ready again
        await world.until(
            lambda: ready(url), timeout=30, what="/readyz ready once the partitions resume"
        )
        # and rolloutctl finds the decisions topic to answer a kill
        code = await asyncio.to_thread(
            rolloutctl, world, tmp_path / "keys", monkeypatch, "kill", FLAG
        )
        assert code == 0, world.daemon.log_text()[-3000:]
        assert world.daemon.running, world.daemon.log_text()[-3000:]
