"""``examples/app.py`` against a real broker: each event it sends for a unit a holdout keeps
out says so (cohort ``holdout``), so ingest counts it apart from the stage's control."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from controller.core.wire import held_out
from controller.core.wire.messages import Arm, event_adapter
from controller.sdk import EventEmitter, FlagClient
from controller.settings import KafkaSettings
from tests.support.backing.reading import read_to_end

pytestmark = pytest.mark.integration

TopicFactory = Callable[..., Awaitable[str]]
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "app.py"
FLAG, NAME, PERCENT = "checkout", "q4", 10.0
UNITS = [f"user-{i}" for i in range(600)]


def example() -> ModuleType:
    """``examples/app.py`` as a module, as a newcomer would copy it."""
    spec = importlib.util.spec_from_file_location("example_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def state() -> bytes:
    return orjson.dumps({
        "type": "flag_state", "v": 1, "id": "s1", "ts": int(time.time() * 1000), "flag": FLAG,
        "version": 3, "status": "rolling_out", "percent": 50.0, "salt": "s1",
        "rollout_id": "r1", "stage": 1, "holdout": {"name": NAME, "percent": PERCENT},
    })  # fmt: skip


async def test_the_example_reports_each_held_out_unit_as_held_out(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    states = await topic_factory("flag-state", partitions=1)
    topic = await topic_factory("events", partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(states, key=FLAG.encode(), value=state())
    finally:
        await producer.stop()
    app, kafka = example(), KafkaSettings(bootstrap_servers=kafka_bootstrap)
    async with (
        FlagClient(kafka, topic=states) as flags,
        EventEmitter(kafka, topic=topic) as events,
    ):
        await asyncio.wait_for(flags.ready.wait(), 20)
        for unit in UNITS:
            app.serve(flags, events, FLAG, unit)
    assert (events.sent, sum(events.dropped.values())) == (2 * len(UNITS), 0)

    sent = [
        event_adapter.validate_json(r.value) for r in await read_to_end(kafka_bootstrap, topic, 2)
    ]
    held = {u for u in UNITS if held_out(NAME, PERCENT, u)}
    assert 30 < len(held) < 90  # about a tenth of the units
    assert len(sent) == 2 * len(UNITS)
    for event in sent:
        where = (event.type, event.unit, event.arm, event.flag_version)
        if event.unit in held:
            assert (event.cohort, event.arm) == ("holdout", Arm.CONTROL), where
        else:
            assert event.cohort is None, where
    assert {(e.type, e.cohort) for e in sent} == {
        (kind, cohort) for kind in ("exposure", "request") for cohort in ("holdout", None)
    }
