"""The app-side client against a real broker: agreeing arms, followed updates, no lost events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm, event_adapter
from controller.sdk import EventEmitter, FlagClient
from controller.settings import KafkaSettings
from tests.support.backing.reading import read_to_end
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

TopicFactory = Callable[..., Awaitable[str]]
FLAG = "checkout"
UNITS = [f"user-{i}" for i in range(2000)]


def _state(version: int, percent: float, *, flag: str = FLAG) -> dict[str, Any]:
    return {
        "type": "flag_state",
        "v": 1,
        "id": f"{flag}-{version}",
        "ts": int(time.time() * 1000),
        "flag": flag,
        "version": version,
        "status": "rolling_out",
        "percent": percent,
        "salt": "s1",
        "rollout_id": "r1",
        "stage": version,
    }


async def _produce(bootstrap: str, topic: str, messages: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, key=key.encode(), value=value)
    finally:
        await producer.stop()


def _expected(percent: float) -> list[Arm]:
    return [assign(FLAG, "s1", unit, percent) for unit in UNITS]


async def test_two_clients_agree_and_follow_updates(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = await topic_factory("flag-state", partitions=3)
    await _produce(
        kafka_bootstrap,
        topic,
        [
            (FLAG, orjson.dumps(_state(1, 5.0))),
            (FLAG, orjson.dumps(_state(3, 20.0))),
            (FLAG, orjson.dumps(_state(2, 90.0))),  # older, after the newer one
            (FLAG, b"{not a flag state"),
            ("other", orjson.dumps(_state(1, 50.0, flag="other"))),
        ],
    )
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    async with FlagClient(kafka, topic=topic) as one, FlagClient(kafka, topic=topic) as two:
        await asyncio.wait_for(asyncio.gather(one.ready.wait(), two.ready.wait()), 20)
        for client in (one, two):
            assert (client.invalid, client.stale) == (1, 1)
            assert [client.arm(FLAG, u) for u in UNITS] == [(a, 3) for a in _expected(20.0)]
        before = {u for u, a in zip(UNITS, _expected(20.0), strict=True) if a is Arm.TREATMENT}
        assert 300 < len(before) < 500

        await _produce(kafka_bootstrap, topic, [(FLAG, orjson.dumps(_state(4, 60.0)))])
        await eventually(
            lambda: all(c.arm(FLAG, "x")[1] == 4 for c in (one, two)),
            timeout=5,
            what="both clients to read version 4",
        )
        for client in (one, two):
            arms = [client.arm(FLAG, u) for u in UNITS]
            assert arms == [(a, 4) for a in _expected(60.0)]
            assert all(arms[i][0] is Arm.TREATMENT for i, u in enumerate(UNITS) if u in before)


async def test_emitter_delivers_every_event_once(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = await topic_factory("events", partitions=4)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    ids: dict[str, str] = {}
    async with EventEmitter(kafka, topic=topic) as emitter:
        for i in range(2000):
            unit, arm = f"u{i % 300}", Arm.TREATMENT if i % 2 else Arm.CONTROL
            kind = i % 3
            if kind == 0:
                event_id = emitter.exposure(FLAG, unit, arm, 7)
            elif kind == 1:
                event_id = emitter.request(FLAG, unit, arm, 7, error=i % 5 == 0, latency_ms=i / 10)
            else:
                event_id = emitter.conversion(FLAG, unit, arm, 7, value=1.5)
            assert event_id is not None
            ids[event_id] = unit
            if i % 500 == 0:
                await asyncio.sleep(0)
    assert (emitter.sent, sum(emitter.dropped.values()), emitter.buffered) == (2000, 0, 0)

    received = await _consume(kafka_bootstrap, topic, 4)
    seen = [event_adapter.validate_json(value) for _, value in received]
    assert sorted(e.id for e in seen) == sorted(ids)
    assert all(key == ids[e.id].encode() for (key, _), e in zip(received, seen, strict=True))


async def _consume(bootstrap: str, topic: str, partitions: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of every record of the topic: a duplicate cannot hide."""
    return [(r.key, r.value) for r in await read_to_end(bootstrap, topic, partitions)]
