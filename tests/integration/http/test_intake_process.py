"""The intake's process: batches sent to Apache Kafka from a child, which may die and come back."""

from __future__ import annotations

import os
import signal
import uuid

import orjson
import pytest

from controller.adapters.http import BatchNotSent, ChangedEvents
from controller.daemon.metrics import Metrics
from controller.daemon.serving import IntakeProcess
from controller.settings import KafkaSettings, RedisSettings, Settings, TopicSettings
from tests.support.backing.topics import create_topics
from tests.support.otel.collector_kit import read_topic
from tests.support.waiting import eventually
from tests.unit.daemon.ingest.test_event_intake_once import batch

pytestmark = [pytest.mark.integration]


async def test_batches_are_sent_named_and_refused_from_a_child_that_comes_back_when_killed(
    apache_kafka_bootstrap: str, redis_url: str, redis_namespace: str
) -> None:
    topic = f"intake-process-{uuid.uuid4().hex[:8]}"
    await create_topics(apache_kafka_bootstrap, {topic: 2})
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=apache_kafka_bootstrap),
        redis=RedisSettings(url=redis_url, key_prefix=redis_namespace),
        topics=TopicSettings(events=topic),
    )
    metrics = Metrics()
    async with IntakeProcess(settings, metrics=metrics) as intake:
        # Given a child that sends a batch, names its copies and refuses a changed id
        first = await intake.send("c", batch(3))
        again = await intake.send("c", batch(4))
        assert (first.sent, first.duplicates) == (3, ())
        assert (again.sent, again.duplicates) == (1, ("id-0", "id-1", "id-2"))
        with pytest.raises(ChangedEvents) as changed:
            await intake.send("c", batch(1, arm="treatment"))
        assert changed.value.ids == ["id-0"]

        # When the child is killed
        child = intake._child
        assert child is not None
        os.kill(child.process.pid, signal.SIGKILL)
        await child.process.wait()

        # Then a batch is not sent (a 503: sent again, it is counted once), and once the
        # child is back the same batch is sent
        async def sent_again() -> int | None:
            try:
                return (await intake.send("c", batch(2, start=10))).sent
            except BatchNotSent:
                return None  # still starting

        with pytest.raises(BatchNotSent):
            await intake.send("c", batch(2, start=10))
        sent = await eventually(sent_again, timeout=60, what="the batch sent by a new child")
        assert sent == 2
        assert intake._child is not None
        assert intake._child.process.pid != child.process.pid
        last = intake._child
    # And closing the intake ends its child
    assert last.process.returncode is not None

    values, _ = await read_topic(apache_kafka_bootstrap, topic, 2)
    ids = sorted(orjson.loads(v)["id"] for v in values)
    assert ids == ["id-0", "id-1", "id-10", "id-11", "id-2", "id-3"]
