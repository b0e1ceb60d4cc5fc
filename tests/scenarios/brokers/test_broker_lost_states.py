"""Apps that start after the broker lost its data still know every flag and segment.

The broker (pinned to one port; a fresh Apache Kafka node, or tansu with memory storage)
comes back empty, under a live 5% rollout, a completed flag and a segment. Apps learn
them only from the compacted flag-state and segments topics, so the daemon publishes
every flag's state and every segment again, signed, when it creates its topics again,
and at every start: a :class:`FlagClient` and a :class:`SegmentFollower` started
afterwards, verifying the controller's signature, hold each flag's current state (the 5%
rollout serves treatment to about 5% of units) and the segment, whether the broker came
back while the daemon ran or while it was down.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller.adapters.kafka import ensure_topics
from controller.core.rollouts.rollout import Rollout
from controller.core.trust import signing
from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm
from controller.sdk.flags import FlagClient
from controller.sdk.segments import SegmentFollower
from controller.settings import KafkaSettings
from tests.scenarios.brokers.lost_broker import (
    RestartableBroker,
    broker_may_die,
    kafka_of,
    lost_topics,
    rolloutctl,
    topic_settings,
    topics_exist,
)
from tests.scenarios.harness import Scenario, manual_plan
from tests.support.waiting import eventually

# A fresh Apache Kafka node takes 10 to 20 s to start on a busy machine, more than once here.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]
LIVE, DONE = "checkout", "search"
UNITS = [f"user-{i}" for i in range(2000)]
SIGNER = "controller"


async def test_apps_started_after_the_broker_lost_its_data_know_every_flag(
    restartable_broker: RestartableBroker,
    redis_url: str,
    redis_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = restartable_broker
    topics = lost_topics()
    await ensure_topics(kafka_of(broker.bootstrap), topic_settings(topics))
    key, public = signing.generate_key()
    with broker_may_die():
        async with Scenario(
            bootstrap=broker.bootstrap,
            redis_url=redis_url,
            prefix=redis_namespace,
            topics=topics,
            workdir=tmp_path,
        ) as world:
            world.configure(
                RC_SIGNING__KEY=signing.private_key_text(key), RC_SIGNING__KEY_ID=SIGNER
            )
            # Given a live rollout at 5%, a completed flag and a segment
            world.start_daemon()
            await _decided(world, LIVE, "start", plan=manual_plan())
            await _decided(world, LIVE, "promote")
            await _decided(world, DONE, "start", plan=manual_plan())
            await _decided(world, DONE, "promote", to_end=True)
            ctl = ("segment", "put", "pros", "--rule", 'plan == "pro"')
            code = await asyncio.to_thread(rolloutctl, world, tmp_path / "keys", monkeypatch, *ctl)
            assert code == 0, world.daemon.log_text()[-3000:]
            live, done = await world.rollout(LIVE), await world.rollout(DONE)
            assert live is not None
            assert done is not None
            assert (live.percent, live.flag_status.value) == (5, "rolling_out")
            assert done.flag_status.value == "completed"

            # When the broker comes back without its data while the daemon runs
            broker.lose_data()
            await world.until(
                lambda: topics_exist(broker.bootstrap, topics), timeout=30, what="topics made again"
            )
            # Then an app started afterwards knows every flag's current state, signed
            await _app_knows_every_flag(world, {SIGNER: public}, (live, done))

            # When it comes back empty again while the daemon is down, and the daemon starts
            world.daemon.kill()
            broker.lose_data()
            world.start_daemon()
            # Then an app started afterwards knows them all again
            await _app_knows_every_flag(world, {SIGNER: public}, (live, done))


async def _decided(world: Scenario, flag: str, action: str, **options: object) -> None:
    command = world.command(action, flag, **options)
    decision = await world.decided(command, flag=flag, what=f"{action} {flag}")
    assert decision["outcome"] == "applied", decision


async def _app_knows_every_flag(
    world: Scenario, keys: dict[str, str], rollouts: tuple[Rollout, Rollout]
) -> None:
    kafka = KafkaSettings(bootstrap_servers=world.bootstrap)
    live, done = rollouts
    topic, segments_topic = world.topics["flag_state"], world.topics["segments"]
    async with (
        FlagClient(kafka, topic=topic, keys=keys) as app,
        SegmentFollower(kafka, topic=segments_topic, keys=keys) as follower,
    ):

        def held() -> bool:
            versions = {f: (s.version if (s := app.state(f)) else None) for f in (LIVE, DONE)}
            assert versions == {LIVE: live.flag_version, DONE: done.flag_version}, versions
            assert follower.version("pros") == 1
            return True

        await eventually(held, timeout=60, what="every flag and segment held by a new app")
        assert app.rejected == 0
        served = [app.arm(LIVE, unit) for unit in UNITS]
        expected = [(assign(LIVE, live.salt, u, 5), live.flag_version) for u in UNITS]
        assert served == expected
        treated = sum(arm is Arm.TREATMENT for arm, _ in served)
        assert 40 <= treated <= 170, treated  # about 5% of 2,000
        assert app.arm(DONE, UNITS[0]) == (Arm.TREATMENT, done.flag_version)
