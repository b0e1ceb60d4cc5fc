"""Apache Kafka's own operator commands run from the jars ``make kafka`` installed.

The runbook and the docs send an operator to ``kafka-consumer-groups``,
``kafka-delete-records`` and ``kafka-dump-log``; each must run against the broker,
not stop at a missing class. They are run as ``rollout-controller dev kafka-tool``
runs them, and what they did is read back with the Python client.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controller.cli import main
from controller.dev.kafka_tools import run_tool

pytestmark = [pytest.mark.integration]

RECORDS = 10
TOOL_TIMEOUT = 120.0
"""A JVM and an admin client on a busy two-core machine: seconds, rarely more."""


async def _topic_with_a_group(bootstrap: str, topic: str, group: str) -> None:
    """``topic`` with :data:`RECORDS` records on its one partition, and ``group``'s commit."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(RECORDS):
            await producer.send_and_wait(topic, f"record {n}".encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): RECORDS})
    finally:
        await consumer.stop()


async def _log_start(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets([partition])
        return starts[partition]
    finally:
        await consumer.stop()


async def test_consumer_groups_and_delete_records_run_against_the_broker(
    apache_kafka_bootstrap: str, tmp_path: Path
) -> None:
    bootstrap = apache_kafka_bootstrap
    run = uuid.uuid4().hex[:8]
    topic, group = f"tools.{run}", f"tools-group-{run}"
    await _topic_with_a_group(bootstrap, topic, group)

    # kafka-consumer-groups exits 0 even after an error: its answer is what counts
    listed = run_tool(
        "kafka-consumer-groups.sh",
        ["--bootstrap-server", bootstrap, "--describe", "--group", group],
        timeout=TOOL_TIMEOUT,
        capture=True,
    )
    assert listed.returncode == 0, listed.stderr
    assert "ClassNotFoundException" not in listed.stderr, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines() if topic in line]
    assert rows, listed.stdout + listed.stderr
    assert rows[0][:5] == [group, topic, "0", str(RECORDS), str(RECORDS)], rows

    # kafka-delete-records through the command line moves the log start
    offsets = tmp_path / "delete.json"
    doomed = {"partitions": [{"topic": topic, "partition": 0, "offset": 4}], "version": 1}
    offsets.write_text(json.dumps(doomed), encoding="utf-8")
    argv = ["--bootstrap-server", bootstrap, "--offset-json-file", str(offsets)]
    assert main(["dev", "kafka-tool", "delete-records", *argv]) == 0
    assert await _log_start(bootstrap, topic) == 4


def test_an_unknown_command_is_refused_naming_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["dev", "kafka-tool", "kafka-no-such-thing"]) == 1
    refused = capsys.readouterr().err
    assert "kafka-no-such-thing" in refused, refused
    assert "kafka-delete-records" in refused, refused
    assert "kafka-dump-log" in refused, refused
