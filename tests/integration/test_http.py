"""The daemon's HTTP endpoints, with real requests against the running process."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.rig import Rig, flags_of
from tests.reference import make_event
from tests.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def wait_status(url: str, status: int, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: httpx.Response | None = None
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                last = await client.get(url)
                if last.status_code == status:
                    return last
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never answered {status}; last: {last and last.text}")


async def metrics_until(url: str, check: Callable[[str], bool], timeout: float = 30) -> str:
    """The metrics page, once ``check`` holds for it."""
    deadline = time.monotonic() + timeout
    while not check(text := (await wait_status(url, 200)).text):
        assert time.monotonic() < deadline, text
        await asyncio.sleep(0.1)
    return text


def sample(metrics_text: str, name: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == name:
                return float(s.value)
    return 0.0


async def test_health_readiness_metrics_and_flags(rig: Rig, tmp_path: Path) -> None:
    port = free_port()
    rig.env["RC_HTTP__PORT"] = str(port)
    base = f"http://127.0.0.1:{port}"
    with rig.daemon(tmp_path):
        await wait_status(f"{base}/healthz", 200)
        ready = await wait_status(f"{base}/readyz", 200)
        assert ready.json()["ready"] is True
        deadline = time.monotonic() + 30
        before = ""
        while sample(before, "rollout_ingest_partitions") < 4:  # claims arrive one by one
            assert time.monotonic() < deadline, before
            before = (await wait_status(f"{base}/metrics", 200)).text
        # It says which partitions it owns: the events ones and the commands ones (its flags).
        owned = (await wait_status(f"{base}/readyz", 200)).json()
        assert owned["events_partitions"] == [0, 1, 2, 3]
        assert owned["commands_partitions"]
        assert 'rollout_partition_owned{partition="3",role="events"} 1.0' in before
        events = [make_event(random.Random(5), i) for i in range(1000)]
        await rig.produce_events(events)
        await rig.produce([(b"k", b"{broken")])
        await rig.wait_counted(flags_of(events), len(events))

        def folded(text: str) -> float:
            name = "rollout_ingest_events_total"
            return sample(text, name) - sample(before, name)

        # Counted after the flush, and the broken record may sit on another partition.
        after = await metrics_until(
            f"{base}/metrics",
            lambda text: folded(text) >= 1000 and sample(text, "rollout_ingest_rejects_total") >= 1,
        )
        assert folded(after) == 1000
        assert sample(after, "rollout_ingest_flush_seconds_count") > 0
        flags = await wait_status(f"{base}/flags", 200)
        assert flags.json() == []
        etag = flags.headers["ETag"]
        async with httpx.AsyncClient() as client:
            again = await client.get(f"{base}/flags", headers={"If-None-Match": etag})
        assert again.status_code == 304


async def test_readyz_goes_unready_when_redis_stops(
    rig: Rig, tmp_path: Path, redis_server_factory: Callable[..., Any]
) -> None:
    server = redis_server_factory(persistent=True)
    outage = Rig(rig.bootstrap, server.url, rig.events, rig.dlq, rig.prefix)
    port = free_port()
    outage.env["RC_HTTP__PORT"] = str(port)
    with outage.daemon(tmp_path):
        await wait_status(f"http://127.0.0.1:{port}/readyz", 200)
        server.stop()
        unready = await wait_status(f"http://127.0.0.1:{port}/readyz", 503, timeout=30)
        assert "redis" in unready.json()["reason"]
        server.start()
        await wait_status(f"http://127.0.0.1:{port}/readyz", 200, timeout=30)
