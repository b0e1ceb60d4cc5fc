"""The events consumer after a rebalance took a partition away mid-claim, and both
consumers while the group coordinator does not answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from controller.adapters.kafka.consumers import ControlConsumer, EventConsumer
from controller.settings import KafkaSettings


class Listener:
    def partitions_assigned(self, partitions: list[int]) -> None:
        pass

    def partitions_revoked(self, partitions: list[int]) -> None:
        pass


@pytest.mark.parametrize("start_from", ["earliest", "latest"])
@pytest.mark.parametrize("offset", [None, 500])
async def test_a_partition_no_longer_assigned_is_neither_sought_paused_nor_resumed(
    start_from: str, offset: int | None
) -> None:
    # aiokafka's own consumer, never started: it is assigned nothing, as after a rebalance
    # that took every partition of a topic the broker lost
    consumer = EventConsumer(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        topic="events",
        listener=Listener(),
        start_from=start_from,
    )
    try:
        await consumer.seek(2, offset)
        consumer.pause([0, 2])
        consumer.resume([0, 2])
    finally:
        await consumer._client.stop()  # never started, so stop() would leave it open


class Unanswered:
    """aiokafka's consumer while the group coordinator is unavailable: a commit is retried
    and never returns."""

    def __init__(self) -> None:
        self.commits = 0

    async def commit(self, offsets: object = None) -> None:
        self.commits += 1
        await asyncio.Event().wait()


def events_consumer() -> tuple[EventConsumer, Callable[[], Awaitable[None]]]:
    consumer = EventConsumer(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        topic="events",
        listener=Listener(),
        start_from="earliest",
    )
    return consumer, lambda: consumer.commit({0: 500})


def control_consumer() -> tuple[ControlConsumer, Callable[[], Awaitable[None]]]:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    consumer = ControlConsumer(kafka=kafka, commands="commands", monitors="monitors")
    return consumer, consumer.commit


@pytest.mark.parametrize("made", [events_consumer, control_consumer], ids=["events", "control"])
async def test_a_commit_the_group_coordinator_never_answers_does_not_hold_fetching(
    monkeypatch: pytest.MonkeyPatch,
    made: Callable[[], tuple[EventConsumer | ControlConsumer, Callable[[], Awaitable[None]]]],
) -> None:
    consumer, commit = made()
    real, unanswered = consumer._client, Unanswered()
    monkeypatch.setattr("controller.adapters.kafka.consumers._ANSWER_TIMEOUT_S", 0.05)
    monkeypatch.setattr(consumer, "_consumer", unanswered)
    try:
        # the loop awaits this between fetches: it returns, the commit skipped
        await asyncio.wait_for(commit(), 10)
        assert unanswered.commits == 1
    finally:
        await real.stop()
