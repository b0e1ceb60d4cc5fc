"""The OTLP intake: an export's events sent once, what is not counted dead-lettered and named.

The broker and the record of sent events are the in-memory ones of
``test_event_intake_once``; the translator, the flag directory and the event
intake are the daemon's own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import cast

import orjson
from msgspec.structs import replace

from controller.adapters.kafka import Producer
from controller.adapters.redis.ledger import EventLedger
from controller.core.rollouts import Rollout
from controller.core.telemetry import FlagRules, Spans, Translator, decode_traces_json
from controller.daemon.metrics import Metrics
from controller.daemon.registries import FlagDirectory
from controller.daemon.serving.event_intake import EventIntake
from controller.daemon.serving.otlp_intake import OtlpIntake
from controller.ports import DeadLetter
from tests.support.otel.otlp_exports import Recorder, evaluate, openfeature_client, traces_json
from tests.support.waiting import eventually
from tests.unit.core.machine.gate.test_gate import rollout
from tests.unit.daemon.ingest.test_event_intake_once import Broker, Ledger


class Letters:
    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        self.sent.extend(letters)


class World:
    """One flag under rollout, and the intake over the in-memory broker."""

    def __init__(self, since: datetime) -> None:
        self.rollouts = [self.published("f", since)]
        self.broker, self.letters, self.metrics = Broker(), Letters(), Metrics()
        self.now = datetime.now(UTC)
        self.directory = FlagDirectory(self.load, max_age=0.0)
        self.hold: Callable[[str], None] | None = None
        events = EventIntake(
            producer=cast("Producer", self.broker),
            ledger=cast("EventLedger", Ledger()),
            topic="events",
            dedupe_seconds=60,
            metrics=self.metrics,
        )
        self.events = events
        self.intake = OtlpIntake(
            events=events,
            directory=self.directory,
            translator=Translator(self.lookup, guard_ms=2000, join_window_ms=30_000),
            dead_letters=self.letters,
            metrics=self.metrics,
            max_event_bytes=65536,
            clock=lambda: self.now,
        )

    def lookup(self, flag: str) -> FlagRules | None:
        """The directory's answer, once ``hold`` (when set) let it go."""
        if self.hold is not None:
            self.hold(flag)
        return self.directory.lookup(flag)

    @staticmethod
    def published(flag: str, since: datetime, version: int = 1) -> Rollout:
        times = {"stage_started_at": since, "started_at": since, "updated_at": since}
        update = {"flag": flag, "flag_version": version, "stage_versions": {0: [version]}}
        return rollout().model_copy(update=times | update)

    async def load(self) -> Sequence[Rollout]:
        return self.rollouts

    def sent(self) -> list[dict[str, object]]:
        return [orjson.loads(r.value or b"") for r in self.broker.records]


def requests(units: list[str], flag: str = "f", variant: str = "treatment") -> Spans:
    recorder = Recorder()
    client = openfeature_client({flag: variant})
    for unit in units:
        with recorder.request(status=500 if unit.endswith("0") else 200):
            evaluate(client, flag, unit)
    decoded = decode_traces_json(traces_json(recorder.spans()))
    assert isinstance(decoded, Spans)
    return decoded


async def test_an_export_is_sent_once_and_its_unknown_variant_dead_lettered_and_named() -> None:
    world = World(since=datetime.now(UTC) - timedelta(minutes=5))
    known, purple = requests(["u0", "u1", "u2"]), requests(["u9"], variant="purple")
    batch = Spans(known.spans + purple.spans, [])
    taken = await world.intake.take("key:c", "traces", batch)
    again = await world.intake.take("key:c", "traces", batch)
    sent = world.sent()
    assert sorted((e["type"], e["unit"]) for e in sent) == sorted(
        (kind, unit) for kind in ("exposure", "request") for unit in ("u0", "u1", "u2")
    )
    assert [e["error"] for e in sent if e["type"] == "request" and e["unit"] == "u0"] == [True]
    assert taken.rejected == again.rejected == 1
    assert taken.message.startswith("1 spans or evaluations not counted (unknown_variant x1")
    assert [(d.reason, d.record.topic) for d in world.letters.sent] == [
        ("unknown_variant", "otlp-http:/v1/traces")
    ] * 2
    letter = orjson.loads(world.letters.sent[0].record.value or b"")
    assert (letter["reason"], letter["client"]) == ("unknown_variant", "key:c")
    assert sample(world.metrics, "rollout_otlp_http_events_total", type="exposure") == 3


async def test_evaluations_of_a_flag_no_rollout_published_are_ignored_not_refused() -> None:
    world = World(since=datetime.now(UTC) - timedelta(minutes=5))
    known, ordinary = requests(["u0", "u1"]), requests(["u7", "u8", "u9"], flag="nobody.knows")
    taken = await world.intake.take("c", "traces", Spans(known.spans + ordinary.spans, []))
    assert (taken.rejected, taken.message) == (0, "")
    assert world.letters.sent == []
    assert len(world.sent()) == 4
    labels = {"path": "http", "signal": "traces"}
    assert sample(world.metrics, "rollout_otlp_ignored_evaluations_total", **labels) == 3
    refused = world.metrics.registry.get_sample_value
    assert refused("rollout_otlp_http_refused_total", {"signal": "traces", "reason": "x"}) is None


async def test_the_first_export_of_a_flag_published_since_the_flags_were_read_is_counted() -> None:
    # Given flags read before the flag's rollout was published
    world = World(since=datetime.now(UTC) - timedelta(minutes=5))
    published, world.rollouts = world.rollouts, []
    await world.directory.fresh()
    assert world.directory.lookup("f") is None
    # When it is published, and an app's export of its evaluations comes at once, with
    # evaluations of a flag no rollout publishes beside them
    world.rollouts = published
    ordinary = requests(["u7"], flag="nobody.knows")
    taken = await world.intake.take(
        "c", "traces", Spans(requests(["u1", "u2"]).spans + ordinary.spans, [])
    )
    # Then the flags are read again and its evaluations counted, the other flag's ignored
    assert taken.rejected == 0
    assert sorted((e["type"], e["unit"]) for e in world.sent()) == sorted(
        (kind, unit) for kind in ("exposure", "request") for unit in ("u1", "u2")
    )
    labels = {"path": "http", "signal": "traces"}
    assert sample(world.metrics, "rollout_otlp_ignored_evaluations_total", **labels) == 1


async def test_an_event_sent_before_with_other_content_keeps_its_first_copy() -> None:
    # Given evaluations without a version, counted for the version in force at their time
    world = World(since=datetime.now(UTC) - timedelta(minutes=5))
    batch = requests(["u1", "u2"])
    await world.intake.take("c", "traces", batch)
    # When the flag's history is read again with another version over that time
    world.rollouts = [World.published("f", datetime.now(UTC) - timedelta(minutes=6), version=7)]
    world.directory._rules = None  # read again at once
    taken = await world.intake.take("c", "traces", batch)
    # Then nothing is sent again, and nothing is refused: the first copies count
    assert taken.rejected == 0
    assert {e["flag_version"] for e in world.sent()} == {1}
    assert len(world.sent()) == 4
    assert sample(world.metrics, "rollout_otlp_http_evaluations_total", kind="changed") == 4


async def test_evaluations_that_never_met_their_request_are_dropped_and_counted() -> None:
    world = World(since=datetime.now(UTC) - timedelta(minutes=5))
    # the evaluation is on an inner span whose SERVER parent never arrives
    inner = replace(requests(["u1"]).spans[0], kind=1, parent_span_id="ab" * 8)
    await world.intake.take("c", "traces", Spans([inner], []))
    assert [e["type"] for e in world.sent()] == ["exposure"]  # counted on arrival
    assert world.intake.expire() == 0  # still within the join window
    world.now += timedelta(seconds=31)
    assert world.intake.expire() == 1
    assert sample(world.metrics, "rollout_otlp_http_evaluations_total", kind="unmatched") == 1


async def test_an_export_is_translated_on_a_thread_of_its_own_while_the_loop_runs_on() -> None:
    world = World(since=datetime.now(UTC) - timedelta(minutes=5))
    released, threads = threading.Event(), set[int]()

    def hold(_flag: str) -> None:
        threads.add(threading.get_ident())
        released.wait(timeout=5)  # on the loop's own thread, nothing could set it

    world.hold = hold
    # Given an export whose translation is held halfway
    taking = asyncio.create_task(world.intake.take("c", "traces", requests(["u1"])))
    await eventually(lambda: threads, timeout=30, what="the translation under way")
    # Then the event loop runs on meanwhile, and the export waits for its translation
    assert not taking.done()
    released.set()
    await taking
    assert len(world.sent()) == 2
    # ... which ran on one thread, not the loop's, as the next export's and the expiry do
    await world.intake.take("c", "traces", requests(["u2"]))
    assert threading.get_ident() not in threads
    assert len(threads) == 1


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0
