"""An operator deletes the controller's topics on Apache Kafka; they come back empty.

Kafka deletes a topic asynchronously, and a topic of the same name starts again at offset
0. Under a counted rollout, the events and flag-state topics are deleted with the admin
API. The daemon creates them again (``topics_recreated``), holds every events partition,
whose stored offset is past the new log's end (critical alert, ``/readyz`` not ready),
and publishes the flag's state again, so an app started afterwards knows it. When the
operator deletes the flag-state topic and creates it again at once, before the daemon
looks, its log going back has the state published again all the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from controller.adapters.kafka import ensure_topics, topic_names
from controller.core.common.errors import BrokerError
from controller.core.rollouts.rollout import Rollout
from controller.sdk.flags import FlagClient
from controller.settings import KafkaSettings
from tests.scenarios.brokers.lost_broker import (
    FLAG,
    PARTITIONS,
    counted,
    held_alerts,
    kafka_of,
    lost_broker_world,
    readyz,
    stored_offsets,
    topic_settings,
)
from tests.scenarios.harness import Scenario, manual_plan
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_topics_deleted_and_created_again_hold_ingest_and_keep_the_flag_known(
    apache_kafka_bootstrap: str, redis_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    bootstrap = apache_kafka_bootstrap
    async with lost_broker_world(
        bootstrap, redis_url, redis_namespace, tmp_path, RC_INGEST__STALL_AFTER_SECONDS="600"
    ) as (world, url):
        # Given a rollout at its second stage whose events are all counted
        world.start_daemon()
        await world.start(FLAG, manual_plan())
        promoted = await world.decided(world.command("promote", FLAG), flag=FLAG, what="promote")
        assert promoted["outcome"] == "applied", promoted
        world.run_apps(FLAG, rate=2000)
        await world.until(lambda: world.events_sent >= 2000, timeout=60, what="events sent")
        await world.stop_apps()
        sent = world.events_sent

        async def all_counted() -> bool:
            assert await counted(world) == sent
            return True

        await world.until(all_counted, timeout=60, what="every event counted")
        stored = await stored_offsets(world)
        rollout = await world.rollout(FLAG)
        assert rollout is not None

        # When an operator deletes the events and flag-state topics (the daemon, which
        # makes missing topics itself, creates them again)
        await _delete(bootstrap, [world.topics["events"], world.topics["flag_state"]])

        # Then it says so, and holds every events partition, its stored offset past the
        # new log's end
        await world.until(
            lambda: world.observed.alert_where(kind="topics_recreated"),
            timeout=60,
            what="the topics_recreated alert",
        )
        alerts = await world.until(
            lambda: held_alerts(world) if len(held_alerts(world)) == PARTITIONS else None,
            timeout=90,
            what="an events_log_gap alert per partition",
        )
        for alert in alerts:
            details = alert["details"]
            assert details["stored_offset"] == stored[details["partition"]], alert
            assert details["end"] < details["stored_offset"], alert
        status, body = await readyz(url)
        assert status == 503, body
        # and an app started now knows the flag's current state, published again
        await _app_knows(world, rollout)

        # When the operator deletes the flag-state topic and creates it again at once
        await _delete(bootstrap, [world.topics["flag_state"]])

        async def recreated() -> bool:
            try:
                await ensure_topics(kafka_of(bootstrap), topic_settings(world.topics))
            except BrokerError as exc:  # a name still being deleted; asked again
                raise AssertionError(str(exc)) from exc
            assert world.topics["flag_state"] in await topic_names(kafka_of(bootstrap), timeout_s=5)
            return True

        await eventually(recreated, timeout=60, what="the flag-state topic created again")
        # Then an app started afterwards still knows the flag: its log went back, and the
        # daemon published every state again
        await _app_knows(world, rollout)
        assert await counted(world) == sent
        assert world.daemon.running, world.daemon.log_text()[-3000:]


async def _delete(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Answered once the deletion is in the cluster's metadata; the daemon may create
        # the topics again from then on.
        await admin.delete_topics(names)
    finally:
        await admin.close()


async def _app_knows(world: Scenario, rollout: Rollout) -> None:
    kafka, topic = KafkaSettings(bootstrap_servers=world.bootstrap), world.topics["flag_state"]
    async with FlagClient(kafka, topic=topic) as app:

        def held() -> bool:
            state = app.state(FLAG)
            assert state is not None
            assert (state.version, state.status) == (rollout.flag_version, rollout.flag_status)
            return True

        # Apache Kafka may answer the daemon's producer, which knew the deleted topic,
        # NOT_LEADER_OR_FOLLOWER until its request times out; the republish then goes again
        # (tests/integration/kafka/test_topic_keeper.py): on a busy machine past a minute.
        await world.until(held, timeout=150, what="the flag's current state held by a new app")
