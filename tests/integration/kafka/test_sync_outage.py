"""A Flask app on the thread-backed client through a broker outage: no request waits for it.

The broker is killed for ``RC_SDK_OUTAGE_SECONDS`` (30 by default) while four
threads keep sending requests to a Flask app whose views are measured. Every
request is answered, the buffer stays within its bound, every event is sent,
dropped and counted, or still buffered, and after the restart the backlog goes
out. The figures (per-request p50/p99/max with the broker up and during the
outage, RSS) are printed, not asserted. With four threads on the GIL a
request's tail is set by thread switches (5 ms each), up or down:

    python -m pytest -s tests/integration/kafka/test_sync_outage.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time

import psutil
import pytest
from flask import Flask

from controller.sdk.sync import SyncFlags
from controller.settings import KafkaSettings
from tests.integration.kafka.test_emitter_outage import (
    TOPIC,
    OutageBroker,
    _consume,
    broker,  # noqa: F401 (the fixture)
)
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "checkout.new-flow"
OUTAGE_SECONDS = float(os.environ.get("RC_SDK_OUTAGE_SECONDS", "30"))
BASELINE_SECONDS = 5.0
THREADS = 4
BUFFER = 1_000
MAX_RSS_GROWTH = 50 * 1024 * 1024  # a bound on memory, not a target


class Load:
    """Threads sending requests to the app until stopped, timing each one."""

    def __init__(self, app: Flask, flags: SyncFlags) -> None:
        self._app, self._flags = app, flags
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.durations_ns: list[int] = []
        self.statuses: list[int] = []
        self.max_buffered = 0
        self._threads = [threading.Thread(target=self._work, args=(i,)) for i in range(THREADS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _work(self, index: int) -> None:
        client = self._app.test_client()
        durations, statuses, i = [], [], 0
        while not self._stop.is_set():
            began = time.perf_counter_ns()
            statuses.append(client.get(f"/checkout/user-{index}-{i % 5000}").status_code)
            durations.append(time.perf_counter_ns() - began)
            self.max_buffered = max(self.max_buffered, self._flags.buffered)
            i += 1
        with self._lock:
            self.durations_ns += durations
            self.statuses += statuses


def _app(flags: SyncFlags) -> Flask:
    app = Flask("shop")

    @app.get("/checkout/<user>")
    def checkout(user: str) -> dict[str, str]:
        with flags.measure(FLAG, user) as arm:
            return {"arm": arm.value}

    return app


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


async def test_a_broker_outage_blocks_no_request(broker: OutageBroker) -> None:  # noqa: F811
    flags = SyncFlags(
        KafkaSettings(bootstrap_servers=broker.bootstrap),
        flag_topic="no.such.flag-state",  # no states: every unit is served control
        events_topic=TOPIC,
        max_buffered=BUFFER,
        flush_timeout=20.0,
        request_timeout_ms=2_000,
    )
    app = _app(flags)
    try:
        warm = Load(app, flags)  # the same load with the broker up: the baseline
        warm.start()
        await eventually(lambda: flags.sent >= 2_000, timeout=30, what="events sent before")
        await asyncio.sleep(BASELINE_SECONDS)  # a fixed span to measure over, not a wait
        warm.stop()
        await eventually(lambda: flags.buffered == 0, timeout=30, what="the buffer to drain")
        sent_before = flags.sent

        broker.kill()
        rss_before = _rss()
        load = Load(app, flags)
        load.start()
        rss_peak = rss_before
        deadline = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            rss_peak = max(rss_peak, _rss())
        load.stop()
        rss_after = _rss()
        assert flags.sent == sent_before  # nothing could go: the broker was down
        assert set(load.statuses) == {200}
        assert load.max_buffered <= BUFFER
        assert flags.dropped["buffer_full"] > 0
        requests = len(warm.statuses) + len(load.statuses)
        assert flags.sent + sum(flags.dropped.values()) + flags.buffered == 2 * requests
        _report(warm, load, rss_before, rss_peak, rss_after)
        assert rss_peak - rss_before < MAX_RSS_GROWTH

        broker.start()
        await eventually(lambda: flags.buffered == 0, timeout=60, what="the backlog to go out")
        assert flags.sent > sent_before
    finally:
        await asyncio.to_thread(flags.close)
    delivered = await _consume(broker.bootstrap)
    ids = [event_id for _, event_id in delivered]
    assert len(ids) == len(set(ids)), "an event arrived twice"


def _percentiles(load: Load) -> str:
    durations_us = sorted(ns / 1000 for ns in load.durations_ns)
    p50 = statistics.median(durations_us)
    p99 = durations_us[int(len(durations_us) * 0.99) - 1]
    return (
        f"{len(durations_us)} requests, per request p50 {p50:.0f} us, p99 {p99:.0f} us, "
        f"max {durations_us[-1] / 1000:.1f} ms"
    )


def _report(warm: Load, load: Load, rss_before: int, rss_peak: int, rss_after: int) -> None:
    print(
        f"\n{THREADS} threads, Flask test client; broker up ({BASELINE_SECONDS:.0f}s): "
        f"{_percentiles(warm)}\n{OUTAGE_SECONDS:.0f}s broker outage: {_percentiles(load)}; "
        f"RSS {rss_before / 2**20:.1f} MiB before, peak {rss_peak / 2**20:.1f} MiB, "
        f"{rss_after / 2**20:.1f} MiB after"
    )
