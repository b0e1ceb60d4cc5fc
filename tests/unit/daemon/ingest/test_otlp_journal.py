"""OTLP/HTTP joins across a restart: the exports of the last join window journaled.

The Node ``EventHook`` writes each evaluation as a log record, exported on ``/v1/logs``
apart from its request span on ``/v1/traces`` (the SDK's log batches every second, its
span batches every five). An export is answered once its events are acknowledged, so
what it leaves waiting must outlive the process: a restart translates the journal's
exports again for their joins only. The intake is the daemon's own over the in-memory
broker and record of sent events of ``test_otlp_intake``; a restart is a new intake, with
a new translator, over the same broker, record and journal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry._logs import LogRecord

from controller.core.common import StoreError
from controller.core.telemetry import Logs, Spans, Translator, decode_logs_json, decode_traces_json
from controller.daemon.serving.otlp_intake import Journal, OtlpIntake
from tests.support.otel.otlp_exports import Recorder, logs_json, traces_json
from tests.unit.daemon.ingest.test_otlp_intake import World

EVALUATION = "feature_flag.evaluation"


class MemoryJournal:
    """What the Redis journal keeps, in memory: it outlives the intakes that share it."""

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.unreadable = False

    async def append(self, entry: bytes) -> None:
        self.entries.append(entry)

    async def recent(self) -> list[bytes]:
        if self.unreadable:
            raise StoreError("redis error: connection refused")
        return list(self.entries)


def node_requests(units: list[str]) -> tuple[Spans, Logs]:
    """Requests as Node's ``EventHook`` records them: each evaluation a log record in its
    request's SERVER span; the spans' export and the log records' apart."""
    recorder = Recorder()
    for unit in units:
        with recorder.request(status=500 if unit.endswith("0") else 200):
            attributes = {
                "feature_flag.key": "f",
                "feature_flag.result.variant": "treatment",
                "feature_flag.context.id": unit,
                "feature_flag.version": "1",
            }
            recorder.logger.emit(LogRecord(event_name=EVALUATION, attributes=attributes))
    spans = decode_traces_json(traces_json(recorder.spans()))
    logs = decode_logs_json(logs_json(recorder.records()))
    assert isinstance(spans, Spans)
    assert isinstance(logs, Logs)
    return spans, logs


def restarted(world: World, journal: Journal | None) -> OtlpIntake:
    """The daemon killed and started again: a new translator, an empty join buffer."""
    return OtlpIntake(
        events=world.events,
        directory=world.directory,
        translator=Translator(world.lookup, guard_ms=2000, join_window_ms=30_000),
        dead_letters=world.letters,
        metrics=world.metrics,
        max_event_bytes=65536,
        clock=lambda: world.now,
        journal=journal,
    )


def counted(world: World) -> list[tuple[object, object, object]]:
    return sorted((e["type"], e["unit"], e.get("error")) for e in world.sent())


def every(units: list[str]) -> list[tuple[object, object, object]]:
    exposures = [("exposure", u, None) for u in units]
    return sorted(exposures + [("request", u, u.endswith("0")) for u in units])


@pytest.mark.parametrize("spans_first", [False, True], ids=["evaluations first", "spans first"])
async def test_a_join_cut_by_a_restart_is_counted_once_with_the_journal(spans_first: bool) -> None:
    world, journal = World(since=datetime.now(UTC) - timedelta(minutes=5)), MemoryJournal()
    units = ["u0", "u1", "u2"]
    spans, logs = node_requests(units)
    first, second = (spans, logs) if spans_first else (logs, spans)
    # Given one half of each join taken, and answered, before the daemon dies
    async with restarted(world, journal) as before:
        await before.take("c", "traces" if spans_first else "logs", first)
    # When the other half, sent twice by a relay, comes to the daemon started again
    world.now += timedelta(seconds=5)
    async with restarted(world, journal) as after:
        for _ in range(2):
            await after.take("c", "logs" if spans_first else "traces", second)
    # Then each exposure and each request outcome is counted once
    assert counted(world) == every(units)


async def test_without_the_journal_a_restart_loses_the_outcomes_that_waited() -> None:
    world = World(since=datetime.now(UTC) - timedelta(minutes=5))
    spans, logs = node_requests(["u1", "u2"])
    async with restarted(world, None) as before:
        await before.take("c", "logs", logs)
    async with restarted(world, None) as after:
        await after.take("c", "traces", spans)
    assert [kind for kind, _, _ in counted(world)] == ["exposure", "exposure"]


async def test_joins_of_two_journaled_halves_are_not_sent_again() -> None:
    world, journal = World(since=datetime.now(UTC) - timedelta(minutes=5)), MemoryJournal()
    spans, logs = node_requests(["u1", "u2"])
    async with restarted(world, journal) as before:
        await before.take("c", "logs", logs)
        await before.take("c", "traces", spans)
    sent = len(world.broker.records)
    async with restarted(world, journal):
        pass
    assert len(world.broker.records) == sent
    assert counted(world) == every(["u1", "u2"])


async def test_exports_older_than_the_join_window_are_not_read_again() -> None:
    world, journal = World(since=datetime.now(UTC) - timedelta(minutes=5)), MemoryJournal()
    spans, logs = node_requests(["u1"])
    async with restarted(world, journal) as before:
        await before.take("c", "logs", logs)
    world.now += timedelta(seconds=31)  # its evaluation would have expired unmatched
    async with restarted(world, journal) as after:
        await after.take("c", "traces", spans)
    assert counted(world) == [("exposure", "u1", None)]


async def test_an_unreadable_journal_does_not_stop_the_start() -> None:
    world, journal = World(since=datetime.now(UTC) - timedelta(minutes=5)), MemoryJournal()
    spans, logs = node_requests(["u1"])
    async with restarted(world, journal) as before:
        await before.take("c", "logs", logs)
    journal.unreadable = True
    async with restarted(world, journal) as after:
        await after.take("c", "traces", spans)
    assert counted(world) == [("exposure", "u1", None)]
    assert len(journal.entries) == 2  # the export taken after the start is journaled
