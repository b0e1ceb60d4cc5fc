"""measure() in an asyncio app on a real broker: outcomes, errors and latencies on the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

import pytest

from controller.core.wire.bucketing import assign
from controller.sdk import EventEmitter, FlagClient, Flags
from controller.settings import KafkaSettings
from tests.integration.kafka.test_sync_client import FLAG, PERCENT, _consume, _topics

pytestmark = pytest.mark.integration

TopicFactory = Callable[..., Awaitable[str]]


class Declined(Exception):
    pass


# Each handler runs in its own task, so each moves a clock of its own: its block's
# duration is exactly what it says, however the handlers interleave.
ELAPSED: ContextVar[float] = ContextVar("elapsed", default=0.0)


def handler_clock() -> float:
    return ELAPSED.get()


async def test_async_measure_reports_each_handler_once_with_its_error_and_latency(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    flag_topic, events_topic = await _topics(kafka_bootstrap, topic_factory)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)

    async def handler(flags: Flags, i: int) -> str:
        async with flags.measure(FLAG, f"user-{i}") as arm:
            await asyncio.sleep(0)  # the other handlers run meanwhile
            ELAPSED.set(ELAPSED.get() + (10 + i) / 1000)  # handler i takes 10 + i ms
            if i % 4 == 0:
                raise Declined(f"card {i} declined")
            return arm.value

    async with Flags(
        FlagClient(kafka, topic=flag_topic),
        EventEmitter(kafka, topic=events_topic),
        clock=handler_clock,
    ) as flags:
        await asyncio.wait_for(flags.book.ready.wait(), 30)
        results = await asyncio.gather(
            *(handler(flags, i) for i in range(200)), return_exceptions=True
        )
    assert sum(isinstance(r, Declined) for r in results) == 50  # raised unchanged
    served = {f"user-{i}": r for i, r in enumerate(results) if isinstance(r, str)}
    assert served == {u: assign(FLAG, "s1", u, PERCENT).value for u in served}

    events = await _consume(kafka_bootstrap, events_topic)
    requests = {e["unit"]: e for e in events if e["type"] == "request"}
    assert len(requests) == 200
    assert len(events) == 400
    assert {u for u, e in requests.items() if e["error"]} == {f"user-{i}" for i in range(0, 200, 4)}
    assert {u: e["latency_ms"] for u, e in requests.items()} == {
        f"user-{i}": 10.0 + i for i in range(200)
    }
