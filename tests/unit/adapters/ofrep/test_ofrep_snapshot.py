"""The OFREP endpoints' snapshot of the flag states: never answered from past its max age."""

from __future__ import annotations

import asyncio

import pytest

from controller.adapters.ofrep.context import MAX_CONTEXT_DEPTH, OfrepFailure, bounded
from controller.adapters.ofrep.routes import _matches
from controller.adapters.ofrep.snapshot import SnapshotCache
from controller.core.common.errors import StoreError
from controller.core.reading.views import FlagStates, FlagStateView
from controller.core.rules.held_segments import NO_HELD_SEGMENTS, HeldSegments
from controller.core.rules.text import parse as parse_rule
from controller.core.wire.messages import FlagStatus


def states(version: int) -> FlagStates:
    view = FlagStateView(
        flag="f",
        version=version,
        status=FlagStatus.ROLLING_OUT,
        percent=5.0,
        salt="s",
        rollout_id="r",
        stage=0,
    )
    return FlagStates([view])


class Source:
    def __init__(self) -> None:
        self.version, self.loads, self.fail = 1, 0, False
        self.gate, self.started = asyncio.Event(), asyncio.Event()
        self.gate.set()

    async def __call__(self) -> FlagStates:
        self.loads += 1
        self.started.set()
        await self.gate.wait()
        if self.fail:
            raise StoreError("redis is down")
        return states(self.version)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("age", "answered", "reloads_behind"),
    [
        (0.0, 1, False),
        (0.49, 1, False),
        (0.5, 1, True),  # past half its max age: served, a reload started behind it
        (0.99, 1, True),
        (1.0, 2, False),  # at its max age: never served, the request waits for a reload
        (30.0, 2, False),  # after an idle stretch: the first request gets fresh states
        (3600.0, 2, False),
    ],
)
async def test_no_answer_comes_from_a_snapshot_older_than_its_max_age(
    age: float, answered: int, reloads_behind: bool
) -> None:
    clock, source = Clock(), Source()
    cache = SnapshotCache(source, max_age=1.0, clock=clock)
    await cache.get()
    source.version, clock.now = 2, age
    snapshot = await cache.get()
    assert snapshot.states["f"].version == answered
    assert (cache.reloading is not None) is reloads_behind
    if cache.reloading is not None:
        await cache.reloading
        assert (await cache.get()).states["f"].version == 2


async def test_requests_that_find_it_stale_share_one_reload_and_a_leaver_does_not_end_it() -> None:
    clock, source = Clock(), Source()
    cache = SnapshotCache(source, max_age=1.0, clock=clock)
    first = await asyncio.gather(*(cache.get() for _ in range(10)))
    assert source.loads == 1  # ten first requests, one load
    assert {s.states["f"].version for s in first} == {1}
    source.version, clock.now = 2, 5.0
    source.gate.clear()
    source.started.clear()
    leaver = asyncio.create_task(cache.get())
    waiting = [asyncio.create_task(cache.get()) for _ in range(5)]
    await source.started.wait()
    leaver.cancel()  # a client that went away
    source.gate.set()
    assert {(await w).states["f"].version for w in waiting} == {2}
    assert source.loads == 2


async def test_age_counts_from_when_the_read_began() -> None:
    clock = Clock()

    class Slow(Source):
        async def __call__(self) -> FlagStates:
            read = await super().__call__()
            clock.now += 0.8  # the read took 0.8 s; the states are as old as its start
            return read

    source = Slow()
    cache = SnapshotCache(source, max_age=1.0, clock=clock)
    await cache.get()
    source.version, clock.now = 2, 1.0  # 0.2 s after the read ended, 1 s after it began
    assert (await cache.get()).states["f"].version == 2


async def test_a_failed_or_slow_reload_is_refused_and_never_answers_from_stale_states() -> None:
    clock, source = Clock(), Source()
    cache = SnapshotCache(source, max_age=1.0, load_seconds=0.05, clock=clock)
    held = await cache.get()
    source.fail, clock.now = True, 0.6
    assert (await cache.get()) is held  # young enough: served while a reload fails behind it
    assert cache.reloading is not None
    with pytest.raises(StoreError, match="redis is down"):
        await cache.reloading  # logged where nobody waited on it
    clock.now = 1.0
    with pytest.raises(StoreError, match="redis is down"):
        await cache.get()  # too old to serve, and Redis does not answer: a 503
    source.fail = False
    source.gate.clear()
    with pytest.raises(StoreError, match=r"did not load within 0\.05 s"):
        await cache.get()
    source.gate.set()
    assert (await cache.get()).states["f"].version == 1  # Redis is back: answered again


class Segments:
    """The segments source: ``beta`` at ``version``, read again only when it changed."""

    def __init__(self) -> None:
        self.version, self.reads, self.fail = 1, 0, False

    async def __call__(self, held: HeldSegments) -> HeldSegments:
        if self.fail:
            raise StoreError("redis is down")
        if held.versions.get("beta") == self.version:
            return held
        self.reads += 1
        return held.keeping({}).with_segment(
            "beta", self.version, ids=frozenset({f"u{self.version}"}), rule=None
        )


async def test_segments_reload_with_the_states_change_the_tag_and_a_failure_keeps_them() -> None:
    now = [0.0]
    segments = Segments()
    cache = SnapshotCache(Source(), segments=segments, max_age=1.0, clock=lambda: now[0])
    first = await cache.get()
    assert first.segments.member("beta", "u1") is True
    assert first.segments.member("beta", "u2") is False
    assert first.segments.member("gamma", "u1") is None
    now[0] = 1.5
    same = await cache.get()
    assert (segments.reads, same.tag) == (1, first.tag)  # unchanged: not read again
    segments.version, now[0] = 2, 3.0
    second = await cache.get()
    assert second.segments.member("beta", "u2") is True
    assert second.tag != first.tag  # the bulk ETag changes with a segment
    segments.fail, now[0] = True, 4.5
    assert (await cache.get()).segments is second.segments  # logged, not raised


async def test_a_first_load_without_segments_holds_none() -> None:
    segments = Segments()
    segments.fail = True
    held = await SnapshotCache(Source(), segments=segments).get()
    assert held.segments is NO_HELD_SEGMENTS


def test_held_segments_answer_ids_and_rules_and_drop_what_is_gone() -> None:
    rule = parse_rule('plan == "pro"')
    held = NO_HELD_SEGMENTS.with_segment("beta", 1, ids=frozenset({"a"}), rule=None).with_segment(
        "pros", 3, ids=None, rule=rule
    )
    assert [held.member("beta", u) for u in ("a", "b")] == [True, False]
    assert held.member("pros", "a") is None  # a rule segment is no id list
    assert [held.matches("pros", {"plan": p}) for p in ("pro", "free")] == [True, False]
    assert held.matches("pros", {}) is None
    assert held.matches("beta", {"plan": "pro"}) is None
    kept = held.keeping({"beta": 1, "pros": 4})  # pros changed: dropped until read again
    assert (dict(kept.versions), kept.matches("pros", {"plan": "pro"})) == ({"beta": 1}, None)
    assert kept.member("beta", "a") is True
    assert kept.tag != held.tag
    assert held.keeping({}).tag == NO_HELD_SEGMENTS.tag


def nested(depth: int) -> dict[str, object]:
    context: dict[str, object] = {"targetingKey": "u"}
    for _ in range(depth - 1):
        context = {"a": context}
    return context


@pytest.mark.parametrize(
    ("context", "refused"),
    [
        (nested(MAX_CONTEXT_DEPTH - 1), False),
        (nested(MAX_CONTEXT_DEPTH), True),  # the innermost value is one level further down
        ({"targetingKey": "u", "list": list(range(997))}, False),
        ({"targetingKey": "u", "list": list(range(998))}, True),
    ],
)
def test_a_context_is_bounded_in_depth_and_values(
    context: dict[str, object], refused: bool
) -> None:
    if refused:
        with pytest.raises(OfrepFailure):
            bounded(context)
    else:
        bounded(context)


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ("", False),
        ('"abc"', True),
        ('W/"abc"', True),
        ('"x", "abc"', True),
        ('"abcd"', False),
        ("*", False),
        (" * ", False),
        ('*, "x"', False),
        ('*, W/"abc"', True),
    ],
)
def test_if_none_match_is_compared_as_http_says(header: str | None, matches: bool) -> None:
    assert _matches(header, '"abc"') is matches
