"""The OFREP endpoints' snapshot of the flag states: loaded once, reloaded behind evaluations."""

from __future__ import annotations

import asyncio

import pytest

from controller.adapters.ofrep import MAX_CONTEXT_DEPTH, SnapshotCache, _bounded, _Failure, _matches
from controller.core.errors import StoreError
from controller.core.messages import FlagStatus
from controller.core.views import FlagStates, FlagStateView


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
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> FlagStates:
        self.loads += 1
        await self.gate.wait()
        if self.fail:
            raise StoreError("redis is down")
        return states(self.version)


async def test_a_stale_snapshot_is_served_while_it_reloads_and_a_failed_reload_keeps_it() -> None:
    now = [0.0]
    source = Source()
    cache = SnapshotCache(source, max_age=1.0, clock=lambda: now[0])
    first = await asyncio.gather(*(cache.get() for _ in range(10)))
    assert source.loads == 1  # ten first requests, one load
    assert {s.states["f"].version for s in first} == {1}
    assert (await cache.get()) is first[0]  # fresh: no reload
    assert cache.reloading is None
    source.version, now[0] = 2, 1.5
    source.gate.clear()
    held = await cache.get()  # stale: served as is, a reload starts behind it
    reload = cache.reloading
    assert reload is not None
    assert held.states["f"].version == 1
    assert (await cache.get()) is held
    assert cache.reloading is reload  # one reload at a time
    source.gate.set()
    await reload
    assert source.loads == 2
    fresh = await cache.get()
    assert fresh.states["f"].version == 2
    assert fresh.tag != held.tag
    source.fail, now[0] = True, 3.0
    await cache.get()
    failing = cache.reloading
    assert failing is not None
    await failing  # logged, not raised
    assert source.loads == 3
    assert (await cache.get()) is fresh  # Redis down: the states held go on
    assert cache.reloading is None  # and the next reload waits for max_age again


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
        with pytest.raises(_Failure):
            _bounded(context)
    else:
        _bounded(context)


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ("", False),
        ('"abc"', True),
        ('W/"abc"', True),
        ('"x", "abc"', True),
        ('"abcd"', False),
        ("*", True),
    ],
)
def test_if_none_match_is_compared_as_http_says(header: str | None, matches: bool) -> None:
    assert _matches(header, '"abc"') is matches
