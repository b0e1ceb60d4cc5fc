"""The thread-backed client on a real broker: a Flask app and a thread pool under load.

Every request's arm agrees with the shared bucketing function, every event
arrives exactly once, an exception in a measured view is an error event and a
500, and closing flushes what was buffered.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from flask import Flask

from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm
from controller.sdk.sync import SyncFlags
from controller.settings import KafkaSettings
from tests.support.backing.reading import events_of, read_to_end
from tests.support.backing.services import free_port

pytestmark = pytest.mark.integration

TopicFactory = Callable[..., Awaitable[str]]
FLAG = "checkout.new-flow"
PERCENT = 40.0
THREADS = 8
PER_THREAD = 250


def _state(version: int) -> bytes:
    return orjson.dumps(
        {
            "type": "flag_state",
            "v": 1,
            "id": f"s{version}",
            "ts": int(time.time() * 1000),
            "flag": FLAG,
            "version": version,
            "status": "rolling_out",
            "percent": PERCENT,
            "salt": "s1",
        }
    )


async def _topics(bootstrap: str, topic_factory: TopicFactory) -> tuple[str, str]:
    flag_topic = await topic_factory("flag-state", partitions=1)
    events_topic = await topic_factory("events", partitions=4)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(flag_topic, key=FLAG.encode(), value=_state(3))
    finally:
        await producer.stop()
    return flag_topic, events_topic


async def _consume(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every event of the topic, read up to the end offsets: a duplicate cannot hide."""
    return events_of(await read_to_end(bootstrap, topic))


def _app(flags: SyncFlags) -> Flask:
    app = Flask("shop")

    @app.get("/checkout/<user>")
    def checkout(user: str) -> dict[str, str]:
        with flags.measure(FLAG, user) as arm:
            return {"arm": arm.value}

    @app.get("/fail/<user>")
    def fail(user: str) -> dict[str, str]:
        with flags.measure(FLAG, user):
            raise RuntimeError("the new flow broke")

    return app


def _serve(flags: SyncFlags) -> tuple[dict[str, str], int]:
    """THREADS threads each send PER_THREAD requests; every tenth one fails."""
    assert flags.wait_loaded(30), "the flag states did not load"
    app = _app(flags)
    app.testing = False  # a view's exception becomes a 500, as in production

    def worker(index: int) -> tuple[dict[str, str], int]:
        client = app.test_client()
        arms: dict[str, str] = {}
        failures = 0
        for i in range(PER_THREAD):
            user = f"user-{index}-{i}"
            if i % 10 == 9:
                assert client.get(f"/fail/{user}").status_code == 500
                failures += 1
                continue
            response = client.get(f"/checkout/{user}")
            assert response.status_code == 200
            arms[user] = response.get_json()["arm"]
        return arms, failures

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(worker, range(THREADS)))
    flags.close()
    arms = {user: arm for part, _ in results for user, arm in part.items()}
    return arms, sum(failures for _, failures in results)


async def test_a_flask_app_on_a_thread_pool_serves_agreed_arms_and_reports_every_request(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    flag_topic, events_topic = await _topics(kafka_bootstrap, topic_factory)
    flags = SyncFlags(
        KafkaSettings(bootstrap_servers=kafka_bootstrap),
        flag_topic=flag_topic,
        events_topic=events_topic,
        max_buffered=THREADS * PER_THREAD * 2,
    )
    arms, failures = await asyncio.to_thread(_serve, flags)

    requests = THREADS * PER_THREAD
    assert failures == requests // 10
    assert arms == {u: assign(FLAG, "s1", u, PERCENT).value for u in arms}
    assert (flags.sent, +flags.dropped, flags.buffered) == (2 * requests, Counter(), 0)
    events = await _consume(kafka_bootstrap, events_topic)
    assert len({e["id"] for e in events}) == len(events) == 2 * requests
    kinds = Counter((e["type"], e.get("error")) for e in events)
    assert kinds == {
        ("exposure", None): requests,
        ("request", False): requests - failures,
        ("request", True): failures,
    }
    served = {e["unit"]: e["arm"] for e in events if e["type"] == "exposure"}
    assert {u: a for u, a in served.items() if u in arms} == arms
    assert {e["flag_version"] for e in events} == {3}
    assert sum(e["arm"] == Arm.TREATMENT for e in events if e["type"] == "exposure") > 0


async def test_calls_after_close_are_dropped_and_counted_not_sent(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    flag_topic, events_topic = await _topics(kafka_bootstrap, topic_factory)
    flags = SyncFlags(
        KafkaSettings(bootstrap_servers=kafka_bootstrap),
        flag_topic=flag_topic,
        events_topic=events_topic,
    )

    def use() -> None:
        assert flags.wait_loaded(30)
        arm, version = flags.arm(FLAG, "u1")
        assert flags.value(FLAG, "u1", False) is (arm is Arm.TREATMENT)
        assert flags.value(FLAG, "u1", "a string") == "a string"  # the flag is boolean
        assert flags.exposure(FLAG, "u1", arm, version) is not None
        flags.close()
        flags.close()  # idempotent
        assert flags.conversion(FLAG, "u1", arm, version, value=3.0) is None

    await asyncio.to_thread(use)
    assert (flags.sent, +flags.dropped) == (1, Counter(closed=1))
    assert [e["type"] for e in await _consume(kafka_bootstrap, events_topic)] == ["exposure"]


EXITING_APP = """
import sys
from controller.core.wire.messages import Arm
from controller.sdk.sync import SyncFlags
from controller.settings import KafkaSettings
from tests.support.backing.services import free_port
flags = SyncFlags(KafkaSettings(bootstrap_servers=sys.argv[1]), flag_topic=sys.argv[2],
                  events_topic=sys.argv[3])
for i in range(500):
    flags.exposure("checkout.new-flow", f"u{i}", Arm.CONTROL, 0)
print("emitted", flush=True)
"""


async def test_events_emitted_just_before_the_process_exits_are_flushed_at_exit(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    flag_topic, events_topic = await _topics(kafka_bootstrap, topic_factory)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        EXITING_APP,
        kafka_bootstrap,
        flag_topic,
        events_topic,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()[-2000:]
    assert b"emitted" in output
    events = await _consume(kafka_bootstrap, events_topic)
    assert sorted(e["unit"] for e in events) == sorted(f"u{i}" for i in range(500))


async def test_an_unreachable_broker_blocks_neither_calls_nor_close() -> None:
    port = free_port()  # nothing listens there
    flags = SyncFlags(
        KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}"),
        max_buffered=100,
        flush_timeout=0.5,
        request_timeout_ms=1_000,
    )

    def use() -> list[str | None]:
        with flags.measure(FLAG, "u1") as arm:
            assert arm is Arm.CONTROL  # nothing loaded: control, version 0
        ids = [flags.conversion(FLAG, f"u{i}", Arm.CONTROL, 0) for i in range(200)]
        flags.close()
        return ids

    ids = await asyncio.to_thread(use)
    assert ids.count(None) == 102  # the buffer held 100: 2 from measure, 98 conversions
    assert not flags.loaded
    assert flags.sent == 0
    assert +flags.dropped == Counter(buffer_full=102, shutdown=100)
