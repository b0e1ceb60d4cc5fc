"""examples/prefect_flow.py under ``prefect_test_harness``, on a real broker.

The flow runs in a child process (Prefect brings its own server, threads and
warnings), with the transform's first attempt failing: the retry sends the
same event ids, so the topic holds one exposure, one request outcome (the
first attempt's error) and one conversion, each with the task run's stable id.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from controller.core.wire.bucketing import assign
from tests.support.backing.reading import events_of, read_to_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER_START_SECONDS = 150
"""A bound on Prefect's own server coming up in the child (its default is 30 s): it
imports and migrates for seconds on an idle machine, for a minute or more on a busy one."""
FLOW_SECONDS = SERVER_START_SECONDS + 90

TopicFactory = Callable[..., Awaitable[str]]
FLAG = "etl.vectorized-transform"
CUSTOMER = "acme"
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "prefect_flow.py"

RUNNER = """
import json, runpy, sys
from prefect.testing.utilities import prefect_test_harness
example = runpy.run_path(sys.argv[1])
bootstrap, flag_topic, events_topic = sys.argv[2:5]
rows = [{"amount": float(i)} for i in range(500)]
with prefect_test_harness(server_startup_timeout=int(sys.argv[5])):
    summary = example["etl"](
        "acme", rows, bootstrap=bootstrap, flag_topic=flag_topic,
        events_topic=events_topic, fail_first_attempts=1,
    )
print("SUMMARY " + json.dumps(summary), flush=True)
"""


@pytest.mark.timeout(FLOW_SECONDS + 60)
async def test_the_prefect_flow_reports_once_across_task_retries(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    flag_topic = await topic_factory("flag-state", partitions=1)
    events_topic = await topic_factory("events", partitions=4)
    await _publish_state(kafka_bootstrap, flag_topic)

    summary = await _run_flow(tmp_path, kafka_bootstrap, flag_topic, events_topic)

    arm = assign(FLAG, "s1", CUSTOMER, 50.0).value
    assert summary == {
        "arm": arm,
        "flag_version": 2,
        "rows": 500,
        "sent": 3,
        "repeated": 1,  # the retry's request outcome; the hook exposed once
        "dropped": 0,
    }
    events = await _events(kafka_bootstrap, events_topic)
    assert [(e["type"], e["arm"], e["flag_version"]) for e in events] == [
        ("exposure", arm, 2),
        ("request", arm, 2),
        ("conversion", arm, 2),
    ]
    assert events[1]["error"] is True
    assert events[2]["value"] == 500
    assert len({e["id"] for e in events}) == 3


async def _publish_state(bootstrap: str, topic: str) -> None:
    state = {
        "type": "flag_state",
        "v": 1,
        "id": "s2",
        "ts": int(time.time() * 1000),
        "flag": FLAG,
        "version": 2,
        "status": "rolling_out",
        "percent": 50.0,
        "salt": "s1",
    }
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=FLAG.encode(), value=orjson.dumps(state))
    finally:
        await producer.stop()


async def _run_flow(
    workdir: Path, bootstrap: str, flag_topic: str, events_topic: str
) -> dict[str, Any]:
    env = {
        "PREFECT_HOME": str(workdir / "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RUNNER,
        str(EXAMPLE),
        bootstrap,
        flag_topic,
        events_topic,
        str(SERVER_START_SECONDS),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **env},
    )
    output, _ = await asyncio.wait_for(process.communicate(), FLOW_SECONDS)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-4000:]
    line = next((ln for ln in text.splitlines() if ln.startswith("SUMMARY ")), None)
    assert line is not None, text[-4000:]
    summary: dict[str, Any] = orjson.loads(line.removeprefix("SUMMARY "))
    return summary


async def _events(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every event of the topic, read up to the end offsets, in production order."""
    events = events_of(await read_to_end(bootstrap, topic))
    return sorted(events, key=lambda e: ("exposure", "request", "conversion").index(e["type"]))
