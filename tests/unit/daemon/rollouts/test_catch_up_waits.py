"""A stage past its planned end that waits for its evidence is alerted once, whatever holds
it: behind the broker's log end, lagging past the lag bound, held. The gate's verdict and
the ``stuck`` alert name each partition's records behind and its owner."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from controller.core.machine import step
from controller.core.rollouts import RaiseAlert, Rollout, TickInput, VerdictKind
from controller.core.rollouts.plan_parts import Stage
from controller.daemon.ingest.catch_up import CatchUp
from controller.daemon.rollouts.completeness import EvidenceWatch
from controller.daemon.rollouts.gates import gated
from tests.unit.core.machine.gate.test_gate import HEALTHY, T0, plan, rollout
from tests.unit.daemon.rollouts.test_catch_up_counted import Alarms, Broker, Store
from tests.unit.daemon.rollouts.test_evidence_watch import Progress

S = timedelta(seconds=1)
END = T0 + timedelta(minutes=30)
"""The planned end of stage 0 in the gate tests' plan (its minimum duration)."""


class World:
    """One gating instance's watch: ingest's times, the broker and the store as set."""

    def __init__(self, stored: dict[int, int | None], *, after: float = 120) -> None:
        self.now = END
        self.progress, self.alarms = Progress(), Alarms()
        self.broker, self.store = Broker({"events": {0: 10, 1: 40}}), Store({"events": stored})
        catch_up = CatchUp(
            ends=self.broker,
            offsets=self.store,
            topics=["events"],
            alert_after=timedelta(seconds=after),
            alarm=self.alarms,
        )
        self.watch = EvidenceWatch(
            progress=self.progress, max_lag=60 * S, clock=lambda: self.now, catch_up=catch_up
        )

    async def gate(self, at: datetime, the: Rollout | None = None) -> tuple[str, ...]:
        """The verdict's kind and reason at ``at``, with partition 1 last counted through at
        ``END`` and partition 0 just now."""
        self.now = at
        self.progress.through = {"events": {0: at, 1: END}}
        await self.watch.refresh()
        verdict = await gated(the or rollout(), HEALTHY, at, None, self.watch)
        return verdict.kind.value, verdict.reason

    def alert(self) -> tuple[RaiseAlert, Any]:
        """The one alert raised, with its details as a reader takes them."""
        ((alert, flag),) = self.alarms.raised
        assert flag == "f"
        return alert, alert.details


async def test_a_wait_that_turns_lagging_is_still_alerted_once_naming_records_and_owner() -> None:
    world = World({0: 10, 1: 3})
    # about to move, it waits for partition 1, whose owner froze
    kind, reason = await world.gate(END)
    assert kind == "hold"
    assert "partition 1 of events 37 records behind (owner b:2)" in reason
    # past the lag bound the verdict holds on lagging: the wait is still timed
    kind, reason = await world.gate(END + 77 * S)
    assert kind == "hold"
    assert "partitions [1] of events not yet counted" in reason
    await world.gate(END + 119 * S)
    assert not world.alarms.raised
    for seconds in (120, 187, 600):
        await world.gate(END + seconds * S)
    alert, details = world.alert()
    assert alert.kind == "evidence_behind"
    assert "partition 1 of events 37 records behind (owner b:2)" in alert.summary
    assert details["waited_s"] == 120
    assert details["lagging"] == {"events": [1]}
    (behind,) = details["behind"]
    assert behind == {
        "topic": "events",
        "partition": 1,
        "records": 37,
        "target": 40,
        "stored": 3,
        "owner": "b:2",
    }


async def test_a_partition_lagging_on_a_quiet_log_is_named_with_its_owner() -> None:
    world = World({0: 10, 1: 40})
    # before the lag bound nothing is missing: the stage may move
    assert (await world.gate(END))[0] == "advance"
    for seconds in (61, 100, 180, 181):
        assert (await world.gate(END + seconds * S))[0] == "hold"
    _, details = world.alert()
    assert details["waited_s"] == 120  # timed from the first gate that saw it lag (61 s)
    assert [(b["partition"], b["records"], b["owner"]) for b in details["behind"]] == [
        (1, 0, "b:2")
    ]


async def test_a_held_partition_past_the_planned_end_is_alerted_on_too() -> None:
    world = World({0: 10, 1: 12})
    world.progress.held_now = {"events": {1}}
    for seconds in (0, 60, 120):
        assert (await world.gate(END + seconds * S))[0] == "hold"
    _, details = world.alert()
    assert details["held"] == {"events": [1]}
    assert [(b["partition"], b["records"], b["owner"]) for b in details["behind"]] == [
        (1, 28, "b:2")
    ]


async def test_before_its_planned_end_a_lagging_stage_asks_no_broker() -> None:
    world = World({0: 10, 1: 3})
    for minutes in (10, 15, 20):
        assert (await world.gate(T0 + timedelta(minutes=minutes)))[0] == "hold"
    assert world.broker.asks == 0
    assert not world.alarms.raised
    assert world.watch.catch_up is not None
    assert not world.watch.catch_up.report()


async def test_a_stuck_alert_on_the_lag_path_names_records_behind_and_owner() -> None:
    stages = [
        Stage(percent=10, min_duration=timedelta(minutes=30), max_duration=timedelta(minutes=31)),
        Stage(percent=100, min_duration=timedelta(0)),
    ]
    state = rollout(plan(stages=stages))
    world = World({0: 10, 1: 3}, after=900)
    at = END + 2 * timedelta(minutes=1)
    world.now = at
    world.progress.through = {"events": {0: at, 1: END}}
    await world.watch.refresh()
    verdict = await gated(state, HEALTHY, at, None, world.watch)
    assert verdict.kind is VerdictKind.HOLD
    waiting = verdict.evidence.incomplete
    _, actions = step(state, TickInput(at, waiting=waiting))
    (stuck,) = [a for a in actions if isinstance(a, RaiseAlert) and a.kind == "stuck"]
    incomplete: Any = stuck.details["incomplete"]
    assert incomplete["lagging"] == {"events": [1]}
    assert [(b["partition"], b["records"], b["owner"]) for b in incomplete["behind"]] == [
        (1, 37, "b:2")
    ]
    assert "partition 1 of events 37 records behind (owner b:2)" in stuck.summary


def _documented_example(kind: str) -> Any:
    doc = Path(__file__).parents[4] / "docs" / "alerts.md"
    blocks = re.findall(r"```json\n(.*?)\n```", doc.read_text(encoding="utf-8"), re.DOTALL)
    return next(b for b in map(json.loads, blocks) if b["kind"] == kind)


async def test_docs_alerts_shows_and_names_what_the_alert_carries() -> None:
    world = World({0: 10, 1: 3}, after=60)
    for seconds in (0, 77, 80):  # about to move, then lagging
        await world.gate(END + seconds * S)
    alert, details = world.alert()
    example = _documented_example("evidence_behind")
    assert set(example["details"]) == set(details)
    assert set(example["details"]["behind"][0]) == set(details["behind"][0])
    doc = (Path(__file__).parents[4] / "docs" / "alerts.md").read_text(encoding="utf-8")
    row = next(line for line in doc.splitlines() if line.startswith("| `evidence_behind` |"))
    named = set(re.findall(r"`([a-z_]+)`", row.split(" | ")[-1]))
    assert set(details) | set(details["behind"][0]) | {"unread", "held"} <= named
    assert "lagging" in row
    assert alert.summary.startswith("f at stage 1/2 (10%): its evidence has not caught up")
