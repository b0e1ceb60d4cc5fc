"""The OpenTelemetry Collector's own CPU per span, beside ours, for ``bench/otlp.py --collector``.

The Collector ``make otelcol`` builds runs ``ops/otelcol/config.yaml`` (otlp receiver,
batch processor, kafka exporter, ``otlp_proto``) against the bench's broker. The
bench POSTs it the same OTLP/protobuf exports the OTLP runs read (``--per-record``
spans each) from four concurrent clients, and times, in the Collector's process CPU
(user + system, psutil), everything from the first export received until its own
metrics say every span was written to Kafka: receive → batch → Kafka export. The
controller then reads the topic the Collector wrote, from start to end, and its CPU
per span is timed over the same mid-run window as the other runs (per record, the
Collector's batches, divided by their mean size).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from following import progress  # beside this script
from prometheus_client.parser import text_string_to_metric_families

from controller.dev.otelcol import Collector

SENDERS = 4


def _metric(text: str, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in (name, f"{name}_total")
    )


async def _post_all(url: str, records: Sequence[bytes]) -> None:
    """Every export POSTed once, by ``SENDERS`` clients; any answer but 200 stops the run."""
    queue = iter(records)
    headers = {"Content-Type": "application/x-protobuf"}
    async with httpx.AsyncClient(timeout=60) as client:

        async def sender() -> None:
            for body in queue:
                answer = await client.post(f"{url}/v1/traces", content=body, headers=headers)
                if answer.status_code != 200:
                    raise RuntimeError(f"the Collector answered {answer.status_code}")

        await asyncio.gather(*(sender() for _ in range(SENDERS)))


EXPORT_SECONDS = 600.0


async def _exported(collector: Collector, spans: int) -> None:
    """Wait until the Collector's exporter has written ``spans`` spans; fail on any refused."""
    deadline = time.monotonic() + EXPORT_SECONDS
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() < deadline:
            text = (await client.get(collector.metrics_url)).text
            failed = _metric(text, "otelcol_exporter_send_failed_spans")
            if failed:
                raise RuntimeError(f"the Collector failed to export {failed:.0f} spans")
            if _metric(text, "otelcol_exporter_sent_spans") >= spans:
                return
            await asyncio.sleep(0.5)
    raise TimeoutError(f"the Collector did not export {spans} spans in {EXPORT_SECONDS} s")


async def collector_cpu_ns(
    collector: Collector, records: Sequence[bytes], spans: int
) -> tuple[float, float]:
    """CPU ns per span the Collector spent on ``records``, and spans a second (wall)."""
    assert collector.process is not None
    process = psutil.Process(collector.process.pid)
    before = process.cpu_times()
    began = time.perf_counter()
    await _post_all(collector.otlp_http_url, records)
    await _exported(collector, spans)
    wall = time.perf_counter() - began
    after = process.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    progress(f"Collector: {spans:,} spans in {wall:.1f} s, {used:.2f} s of CPU")
    return used * 1e9 / spans, spans / wall


async def records_written(bootstrap: str, topic: str, partitions: int) -> int:
    """How many records the topic holds (the Collector's batches)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await consumer.stop()
    return sum(ends.values())


async def through_collector(
    *,
    bootstrap: str,
    topics: dict[str, str],
    records: Sequence[bytes],
    spans: int,
    workdir: Path,
) -> tuple[float, float]:
    """The Collector's CPU ns per span and spans/s, writing to ``topics["spans"]``."""
    with Collector(
        workdir / "otelcol",
        brokers=bootstrap,
        spans_topic=topics["spans"],
        logs_topic=topics["logs"],
    ) as collector:
        return await collector_cpu_ns(collector, records, spans)
