"""The app-side client without a broker: the emitter's bound and drops, arms from held state."""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest

from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm, FlagState, FlagStatus
from controller.sdk import EventEmitter, FlagClient
from controller.settings import KafkaSettings
from tests.support.waiting import eventually

CLOSED_PORT = KafkaSettings(bootstrap_servers="127.0.0.1:1")


def _state(version: int, percent: float, status: FlagStatus = FlagStatus.ROLLING_OUT) -> FlagState:
    return FlagState(
        type="flag_state",
        v=1,
        id=f"s{version}",
        ts=1_700_000_000_000,
        flag="checkout",
        version=version,
        status=status,
        percent=percent,
        salt="pepper",
    )


def _emit_all(emitter: EventEmitter, count: int) -> None:
    """Call every event method ``count`` times each, checking the bound after each round."""
    for i in range(count):
        unit = f"u{i}"
        emitter.exposure("checkout", unit, Arm.TREATMENT, 3)
        emitter.request("checkout", unit, Arm.CONTROL, 3, error=False)
        emitter.conversion("checkout", unit, Arm.CONTROL, 3)
        assert emitter.buffered <= 100


async def _logged(caplog: pytest.LogCaptureFixture, message: str, *, times: int) -> None:
    """Wait until ``message`` was logged ``times`` times."""
    await eventually(
        lambda: sum(message in r.getMessage() for r in caplog.records) >= times,
        timeout=10,
        what=f"{message!r} logged {times} times",
    )


async def test_emitter_without_broker_never_blocks_and_counts_overflow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    emitter = EventEmitter(CLOSED_PORT, max_buffered=100, flush_timeout=0.2)
    await emitter.start()
    # The event methods are plain functions: an app calls them without awaiting,
    # so they cannot wait for the broker, whatever state it is in.
    for method in (emitter.exposure, emitter.request, emitter.conversion):
        assert not inspect.iscoroutinefunction(method)
    _emit_all(emitter, 500)
    assert emitter.buffered == 100
    assert emitter.dropped["buffer_full"] == 1500 - 100
    await _logged(caplog, "event_producer_unavailable", times=2)  # the sender keeps trying
    assert emitter.sent == 0
    assert emitter.buffered == 100
    # The broker never comes: only the flush timeout (0.2 s) can end stop()'s wait; the
    # bound below only keeps a broken stop() from holding the test.
    await asyncio.wait_for(emitter.stop(), timeout=30)
    assert emitter.dropped["shutdown"] == 100
    assert emitter.buffered == 0
    await emitter.stop()  # idempotent


async def test_emitter_buffers_before_start_and_stops_cleanly() -> None:
    async with EventEmitter(CLOSED_PORT, max_buffered=3, flush_timeout=0.1) as emitter:
        ids = [emitter.exposure("checkout", f"u{i}", Arm.CONTROL, 1) for i in range(5)]
        assert ids[3:] == [None, None]
        assert all(isinstance(i, str) and len(i) == 32 for i in ids[:3])
        assert len(set(ids[:3])) == 3
    assert emitter.dropped == {"buffer_full": 2, "shutdown": 3}


async def test_an_event_that_cannot_be_encoded_is_dropped_as_rejected_not_raised() -> None:
    async with EventEmitter(CLOSED_PORT, flush_timeout=0.1) as emitter:
        assert emitter.exposure("checkout", "lone-\ud800", Arm.CONTROL, 1) is None
        assert emitter.conversion("checkout", "u", Arm.CONTROL, 1, key="k-\udfff") is None
        assert emitter.request("checkout", "u", "neither", 1, error=False) is None  # type: ignore[arg-type]
        assert emitter.buffered == 0
        assert isinstance(emitter.exposure("checkout", "u", Arm.TREATMENT, 1), str)
    assert emitter.dropped == {"rejected": 3, "shutdown": 1}


def test_a_unit_that_is_not_unicode_is_served_control_not_raised() -> None:
    client = FlagClient(CLOSED_PORT, states=[_state(2, 100.0)])
    assert client.arm("checkout", "ok") == (Arm.TREATMENT, 2)
    assert client.arm("checkout", "lone-\ud800") == (Arm.CONTROL, 0)


def test_emitter_rejects_a_non_positive_bound() -> None:
    with pytest.raises(ValueError, match="positive"):
        EventEmitter(CLOSED_PORT, max_buffered=0)


def test_arm_follows_assign_with_the_held_state() -> None:
    client = FlagClient(CLOSED_PORT, states=[_state(2, 37.5)])
    for i in range(2000):
        unit = f"user-{i}"
        assert client.arm("checkout", unit) == (assign("checkout", "pepper", unit, 37.5), 2)
    arms = {client.arm("checkout", f"user-{i}")[0] for i in range(2000)}
    assert arms == {Arm.TREATMENT, Arm.CONTROL}


def test_unknown_flag_serves_control_at_version_zero() -> None:
    client = FlagClient(CLOSED_PORT)
    assert client.arm("nope", "u1") == (Arm.CONTROL, 0)
    assert client.state("nope") is None


@pytest.mark.parametrize("status", [FlagStatus.INACTIVE, FlagStatus.ROLLED_BACK, FlagStatus.KILLED])
def test_stopped_flags_serve_control(status: FlagStatus) -> None:
    client = FlagClient(CLOSED_PORT, states=[_state(4, 100.0, status)])
    assert all(client.arm("checkout", f"u{i}") == (Arm.CONTROL, 0) for i in range(500))


@pytest.mark.parametrize("status", [FlagStatus.PAUSED, FlagStatus.COMPLETED])
def test_paused_and_completed_flags_keep_their_percent(status: FlagStatus) -> None:
    client = FlagClient(CLOSED_PORT, states=[_state(5, 100.0, status)])
    assert all(client.arm("checkout", f"u{i}") == (Arm.TREATMENT, 5) for i in range(500))


def test_older_versions_are_ignored_and_counted() -> None:
    client = FlagClient(CLOSED_PORT)
    assert client.apply(_state(3, 20.0))
    assert not client.apply(_state(2, 90.0))
    assert not client.apply(_state(3, 90.0))
    assert client.apply(_state(4, 30.0))
    state = client.state("checkout")
    assert state is not None
    assert (state.version, state.percent) == (4, 30.0)
    assert client.stale == 2


def test_invalid_messages_are_counted() -> None:
    client = FlagClient(CLOSED_PORT)
    client._receive(b"not json")
    client._receive(b'{"type": "flag_state"}')
    client._receive(None)
    client._receive(_state(1, 5.0).model_dump_json().encode())
    assert client.invalid == 3
    assert client.arm("checkout", "u1")[1] == 1
