"""measure(): the exposure on entry, the outcome on exit; stable ids under an idempotency key."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from controller.core.wire.messages import Arm, FlagState, FlagStatus, event_adapter
from controller.sdk.events import EventEmitter, stable_id
from controller.sdk.flags import FlagBook
from controller.sdk.measure import Measurement
from tests.support.fake_clock import FakeClock

FLAG = "checkout.new-flow"


def _book(percent: float = 100.0, status: FlagStatus = FlagStatus.ROLLING_OUT) -> FlagBook:
    return FlagBook(
        [
            FlagState(
                type="flag_state",
                v=1,
                id="s1",
                ts=1,
                flag=FLAG,
                version=7,
                status=status,
                percent=percent,
                salt="salt",
            )
        ]
    )


def _sent(emitter: EventEmitter) -> list[dict[str, Any]]:
    """The events waiting in a never-started emitter's buffer, as validated dicts."""
    events = [event_adapter.validate_json(value) for _, value in emitter._queue]
    return [e.model_dump(mode="json", exclude_none=True) for e in events]


class Boom(Exception):
    pass


def _fails_after(clock: FakeClock, seconds: float, error: Exception) -> None:
    """A block that works ``seconds`` by ``clock``, then raises ``error``."""
    clock.advance(seconds)
    raise error


def test_a_block_that_returns_records_exposure_and_latency() -> None:
    emitter, clock = EventEmitter(), FakeClock()
    with Measurement(_book(), emitter, FLAG, "u1", clock=clock) as arm:
        clock.advance(0.0205)
    exposure, request = _sent(emitter)
    assert arm is Arm.TREATMENT
    assert exposure["type"] == "exposure"
    assert (exposure["arm"], exposure["flag_version"], exposure["unit"]) == ("treatment", 7, "u1")
    assert request["type"] == "request"
    assert request["error"] is False
    assert request["latency_ms"] == 20.5


def test_a_raised_exception_counts_as_an_error_and_propagates_unchanged() -> None:
    emitter, clock = EventEmitter(), FakeClock()
    raised = Boom("payment refused")
    measurement = Measurement(_book(), emitter, FLAG, "u1", clock=clock)
    with pytest.raises(Boom) as caught, measurement:
        _fails_after(clock, 0.003, raised)
    assert caught.value is raised
    _, request = _sent(emitter)
    assert request["error"] is True
    assert request["latency_ms"] == 3.0  # the time until it raised
    assert measurement.error is True


def test_cancellation_records_the_exposure_but_no_outcome() -> None:
    emitter = EventEmitter()
    with pytest.raises(KeyboardInterrupt), Measurement(_book(), emitter, FLAG, "u1"):
        raise KeyboardInterrupt
    assert [e["type"] for e in _sent(emitter)] == ["exposure"]


async def test_the_async_twin_measures_the_same_way() -> None:
    emitter, clock = EventEmitter(), FakeClock()
    async with Measurement(_book(0.0), emitter, FLAG, "u1", clock=clock) as arm:
        await asyncio.sleep(0)  # the block awaits, the clock moves meanwhile
        clock.advance(0.01)
    with pytest.raises(Boom):
        async with Measurement(_book(0.0), emitter, FLAG, "u2", clock=clock):
            _fails_after(clock, 0.25, Boom())
    events = _sent(emitter)
    assert arm is Arm.CONTROL
    assert [(e["type"], e.get("error")) for e in events] == [
        ("exposure", None),
        ("request", False),
        ("exposure", None),
        ("request", True),
    ]
    assert (events[1]["latency_ms"], events[3]["latency_ms"]) == (10.0, 250.0)


def test_a_killed_flag_measures_control_at_version_zero() -> None:
    emitter = EventEmitter()
    with Measurement(_book(100.0, FlagStatus.KILLED), emitter, FLAG, "u1") as arm:
        pass
    assert arm is Arm.CONTROL
    assert {e["flag_version"] for e in _sent(emitter)} == {0}


def test_an_idempotency_key_gives_stable_ids_and_a_retry_is_not_sent_twice() -> None:
    emitter = EventEmitter()
    with pytest.raises(Boom), Measurement(_book(), emitter, FLAG, "u1", key="task-run-1"):
        raise Boom  # the first attempt fails
    with Measurement(_book(), emitter, FLAG, "u1", key="task-run-1"):
        pass  # the retry succeeds: same ids, so neither event is sent again
    events = _sent(emitter)
    assert [e["id"] for e in events] == [
        stable_id("task-run-1", FLAG, "exposure"),
        stable_id("task-run-1", FLAG, "request"),
    ]
    assert events[1]["error"] is True  # the first attempt's outcome is the one counted
    assert emitter.repeated == 2


def test_stable_ids_differ_by_key_flag_and_kind_and_fit_the_contract() -> None:
    ids = {
        stable_id(key, flag, kind)
        for key in ("a", "b")
        for flag in ("f", "g")
        for kind in ("exposure", "request")
    }
    assert len(ids) == 8
    assert stable_id("a", "f", "exposure") == stable_id("a", "f", "exposure")
    assert all(len(i) == 32 for i in ids)


def test_unkeyed_events_always_get_fresh_ids() -> None:
    emitter = EventEmitter()
    for _ in range(2):
        with Measurement(_book(), emitter, FLAG, "u1"):
            pass
    assert len({orjson.loads(v)["id"] for _, v in emitter._queue}) == 4
    assert emitter.repeated == 0


def test_a_block_longer_than_a_day_reports_no_latency() -> None:
    emitter, clock = EventEmitter(), FakeClock()
    with Measurement(_book(), emitter, FLAG, "u1", clock=clock):
        clock.advance(90_000.0)  # left 25 hours later
    _, request = _sent(emitter)
    assert (request["error"], "latency_ms" in request) == (False, False)
