"""The world of a scenario read through the real Collector: the operator's topics, made
first (the test broker creates none by itself), a Collector writing spans and logs to two of
them, and a scenario whose daemon reads its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from controller.dev.otelcol import Collector
from tests.scenarios.harness import TOPICS, Scenario
from tests.support.backing.services import free_port
from tests.support.backing.topics import create_topics


@asynccontextmanager
async def collector_world(
    *,
    kafka: str,
    redis_url: str,
    prefix: str,
    workdir: Path,
    label: str,
    partitions: Mapping[str, int],
    extra: Sequence[str] = (),
    collector_writes: tuple[str, str] = ("spans", "logs"),
) -> AsyncIterator[tuple[Scenario, Collector]]:
    """Topics ``<label>.<run>.<name>`` (the events, the harness's, spans, logs and ``extra``;
    ``partitions`` by name, one where unnamed), a Collector writing spans and logs to the two
    ``collector_writes`` names, and a scenario on them (the ``otelcol`` fixture makes the
    Collector present first)."""
    run = uuid.uuid4().hex[:8]
    names = ("events", *TOPICS, "spans", "logs", *extra)
    topics = {name: f"{label}.{run}.{name}" for name in names}
    await create_topics(kafka, {t: partitions.get(n, 1) for n, t in topics.items()})
    spans, logs = collector_writes
    collector = Collector(
        workdir / "otelcol", brokers=kafka, spans_topic=topics[spans], logs_topic=topics[logs]
    )
    with collector.start():
        async with Scenario(
            bootstrap=kafka, redis_url=redis_url, prefix=prefix, topics=topics, workdir=workdir
        ) as scenario:
            yield scenario, collector


def start_reading_otlp(scenario: Scenario, **settings: str) -> str:
    """The scenario's daemon started on a free port, reading the OTLP topics its world made
    (``settings``: more of its environment); its base URL."""
    port = free_port()
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__HOST="127.0.0.1",
        RC_OTLP__ENABLED="true",
        RC_OTLP__SPANS_TOPIC=scenario.topics["spans"],
        RC_OTLP__LOGS_TOPIC=scenario.topics["logs"],
        **settings,
    )
    scenario.start_daemon()
    return f"http://127.0.0.1:{port}"
