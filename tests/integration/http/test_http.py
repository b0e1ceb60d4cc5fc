"""The daemon's HTTP endpoints, with real requests against the running process."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.rig import Rig, flags_of
from tests.support.backing.services import free_port
from tests.support.reference import make_event
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def wait_status(url: str, status: int, timeout: float = 60) -> httpx.Response:
    async with httpx.AsyncClient(timeout=2) as client:

        async def answered() -> httpx.Response:
            try:
                last = await client.get(url)
            except httpx.HTTPError as exc:
                raise AssertionError(f"{url}: {exc!r}") from exc
            assert last.status_code == status, f"{url} answered {last.status_code}: {last.text}"
            return last

        return await eventually(answered, timeout=timeout, what=f"{url} to answer {status}")


async def wait_unready(url: str, reason: str, timeout: float = 60) -> httpx.Response:
    """``/readyz``'s 503 once its reason names ``reason`` (other stalls may come first)."""

    async def named() -> httpx.Response:
        answer = await wait_status(url, 503, timeout=timeout)
        assert reason in answer.json()["reason"], answer.text
        return answer

    return await eventually(named, timeout=timeout, what=f"{url} to name {reason!r}")


async def metrics_until(url: str, check: Callable[[str], bool], timeout: float = 30) -> str:
    """The metrics page, once ``check`` holds for it."""

    async def holds() -> str:
        text = (await wait_status(url, 200)).text
        assert check(text), text
        return text

    return await eventually(holds, timeout=timeout, what=f"the metrics at {url} to hold")


def sample(metrics_text: str, name: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == name:
                return float(s.value)
    return 0.0


async def test_health_readiness_metrics_and_flags(rig: Rig, tmp_path: Path) -> None:
    port = free_port()
    rig.env["RC_HTTP__PORT"] = str(port)
    # /flags is read without a key here; who may read it is test_read_access's subject.
    rig.env["RC_HTTP__PUBLIC_FLAGS"] = "true"
    base = f"http://127.0.0.1:{port}"
    with rig.daemon(tmp_path):
        await wait_status(f"{base}/healthz", 200)
        ready = await wait_status(f"{base}/readyz", 200)
        assert ready.json()["ready"] is True
        before = await metrics_until(  # claims arrive one by one
            f"{base}/metrics", lambda text: sample(text, "rollout_ingest_partitions") >= 4
        )

        # It says which partitions it owns: the events ones and the commands ones (its flags;
        # the commands' consumer group may give them a moment after the events' on a busy
        # machine, and a ready instance may own none where others hold them all).
        async def owning() -> dict[str, Any]:
            owned: dict[str, Any] = (await wait_status(f"{base}/readyz", 200)).json()
            assert owned["events_partitions"] == [0, 1, 2, 3], owned
            assert owned["commands_partitions"], owned
            return owned

        await eventually(owning, timeout=60, what="the partitions owned, in /readyz")
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
