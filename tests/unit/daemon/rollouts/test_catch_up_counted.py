"""A stage about to move waits until its partitions are counted up to the broker's log ends
pinned for it; a broker that cannot say holds it; one that never catches up is alerted on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from controller.core.common import StoreUnavailable
from controller.core.rollouts import Completeness, RaiseAlert
from controller.daemon.ingest.catch_up import REASK, CatchUp
from controller.daemon.rollouts.completeness import EvidenceWatch
from tests.unit.core.machine.gate.test_gate import rollout

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Broker:
    """Log ends as a test sets them, counting the asks; ``down``: it cannot say."""

    def __init__(self, ends: dict[str, dict[int, int]]) -> None:
        self.ends, self.asks, self.down = ends, 0, False

    async def log_ends(self, topics: Sequence[str]) -> dict[str, dict[int, int]]:
        self.asks += 1
        if self.down:
            raise StoreUnavailable("the broker's log end offsets: no complete answer within 3 s")
        return {t: dict(self.ends[t]) for t in topics if t in self.ends}


class Store:
    """The stored next offsets and the owners, as a test sets them."""

    def __init__(self, stored: dict[str, dict[int, int | None]]) -> None:
        self.stored = stored
        self.owner_of: dict[str, dict[int, str]] = {"events": {0: "a:1", 1: "b:2"}}

    async def stored_offsets(
        self, wanted: Mapping[str, Iterable[int]]
    ) -> dict[str, dict[int, int | None]]:
        return {t: {p: self.stored.get(t, {}).get(p) for p in ps} for t, ps in wanted.items()}

    async def owners(self) -> dict[str, dict[int, str]]:
        return self.owner_of


class Alarms:
    def __init__(self) -> None:
        self.raised: list[tuple[RaiseAlert, str | None]] = []

    def __call__(self, action: RaiseAlert, flag: str | None) -> None:
        self.raised.append((action, flag))


def watched(
    broker: Broker, store: Store, alarms: Alarms | None = None, after: float = 60
) -> EvidenceWatch:
    catch_up = CatchUp(
        ends=broker,
        offsets=store,
        topics=["events"],
        alert_after=timedelta(seconds=after),
        alarm=alarms,
    )
    return EvidenceWatch(progress=None, max_lag=None, clock=lambda: NOW, catch_up=catch_up)


async def test_a_stage_waits_for_its_pinned_targets_not_the_moving_end() -> None:
    broker, store = Broker({"events": {0: 10, 1: 20}}), Store({"events": {0: 10, 1: 15}})
    watch, r = watched(broker, store), rollout()
    await watch.refresh()
    first = await watch.before_moving(r, NOW, Completeness())
    assert not first.complete
    assert [(b.partition, b.records, b.owner) for b in first.behind] == [(1, 5, "b:2")]
    # the topic is busy: its end moved on, yet the stage waits only for what it pinned
    broker.ends = {"events": {0: 500, 1: 900}}
    store.stored = {"events": {0: 12, 1: 20}}
    await watch.refresh()
    later = NOW + timedelta(seconds=2)
    assert (await watch.before_moving(r, later, Completeness())).complete
    assert broker.asks == 1
    # named counted late at the stage's next gate
    assert watch.for_gate(r, later).late == {"events": frozenset({1})}


async def test_the_broker_is_asked_once_a_pass_and_again_once_a_target_reached_grew_old() -> None:
    broker, store = Broker({"events": {0: 3}}), Store({"events": {0: 3}})
    watch = watched(broker, store)
    await watch.refresh()
    for flag in ("a", "b", "c"):
        r = rollout().model_copy(update={"flag": flag})
        assert (await watch.before_moving(r, NOW, Completeness())).complete
    assert broker.asks == 1
    await watch.refresh()
    r = rollout().model_copy(update={"flag": "a"})
    assert (await watch.before_moving(r, NOW + timedelta(seconds=1), Completeness())).complete
    assert broker.asks == 1  # reached lately: its targets stand
    broker.ends = {"events": {0: 8}}
    late = NOW + REASK + timedelta(seconds=1)
    behind = await watch.before_moving(r, late, Completeness())
    assert [b.records for b in behind.behind] == [5]
    assert broker.asks == 2


async def test_a_broker_that_cannot_say_holds_and_says_so() -> None:
    broker, store = Broker({"events": {0: 3}}), Store({"events": {0: 3}})
    broker.down = True
    watch = watched(broker, store)
    await watch.refresh()
    seen = await watch.before_moving(rollout(), NOW, Completeness())
    assert not seen.complete
    assert seen.unread is not None
    assert "could not be read" in (seen.waiting() or "")


async def test_a_partition_that_does_not_catch_up_is_alerted_on_once_naming_its_owner() -> None:
    broker, store, alarms = Broker({"events": {0: 3, 1: 40}}), Store({"events": {0: 3}}), Alarms()
    watch, r = watched(broker, store, alarms, after=30), rollout()
    await watch.refresh()
    await watch.before_moving(r, NOW, Completeness())
    await watch.before_moving(r, NOW + timedelta(seconds=29), Completeness())
    assert not alarms.raised
    assert watch.catch_up is not None
    assert [b.owner for b in watch.catch_up.waiting[r.flag].behind] == ["b:2"]
    assert r.flag in watch.catch_up.report()
    for seconds in (30, 45):
        await watch.before_moving(r, NOW + timedelta(seconds=seconds), Completeness())
    ((alert, flag),) = alarms.raised
    assert flag == r.flag
    assert alert.kind == "evidence_behind"
    assert "partition 1 of events 40 records behind (owner b:2)" in alert.summary
    assert alert.details["topics"] == ["events"]
    watch.forget(r.flag)
    assert not watch.catch_up.report()
