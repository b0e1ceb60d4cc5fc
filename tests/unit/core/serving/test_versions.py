"""Flag versions numbered above every version the topics have seen for the flag: a store
that lost the flag never numbers a new split with an old split's versions."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from controller.core.machine.machine import step
from controller.core.rollouts.actions import PublishFlagState
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.core.rollouts.rollout import CommandInput, Phase, Rollout, TickInput
from controller.core.serving import VersionFloors, next_version, versions_in
from controller.core.wire.messages import CommandAction

T0 = datetime(2026, 11, 23, 8, tzinfo=UTC)
PLAN = Plan(stages=[Stage(percent=p) for p in (1, 5, 25, 100)], windows=())


@pytest.mark.parametrize(
    ("current", "floor", "expected"),
    [
        (0, 0, 1),  # a flag never published: its first version
        (3, 0, 4),  # the store knows the flag: it counts on
        (0, 7, 8),  # a store that lost the flag: above what the topics saw
        (9, 7, 10),  # the store is ahead of the floor read: it counts on
        (7, 7, 8),
        (2, 5, 6),  # a state behind the topics (restored from an older copy): above both
    ],
)
def test_the_next_version_is_above_the_stored_one_and_the_floor(
    current: int, floor: int, expected: int
) -> None:
    assert next_version(current, floor) == expected


def _state(flag: str, version: int) -> bytes:
    return orjson.dumps({"type": "flag_state", "flag": flag, "version": version})


def _decision(flag: str, evidence: object) -> bytes:
    return orjson.dumps({"type": "decision", "flag": flag, "evidence": evidence})


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([], {}),
        ([_state("a", 3), _state("a", 5), _state("b", 1)], {"a": 5, "b": 1}),
        # a compacted topic that ends on a lower version (a loss before versions grew)
        ([_state("a", 9), _state("a", 2)], {"a": 9}),
        # a gate's versions, an opinion's, late evidence's, nested as they are published
        ([_decision("a", {"gate": {"flag_versions": [4, 6]}})], {"a": 6}),
        ([_decision("a", {"on": {"flag_version": 11}})], {"a": 11}),
        ([_decision("a", {"late": [{"flag_versions": [2, 12]}]}), _state("a", 8)], {"a": 12}),
        # what names no version, or one that is not a version, is skipped
        ([_decision("a", {"reason": "x", "flag_version": True})], {}),
        ([_decision("a", {"flag_version": -1, "flag_versions": ["3", 0]})], {}),
        ([_state("a", 2**60)], {}),
        ([b"not json", b"", b"[1]", orjson.dumps({"type": "flag_state", "version": 3})], {}),
        ([orjson.dumps({"type": "alert", "flag": "a", "details": {"flag_version": 3}})], {}),
    ],
)
def test_floors_are_the_highest_version_each_flag_was_seen_at(
    records: list[bytes], expected: dict[str, int]
) -> None:
    floors = VersionFloors()
    for record in records:
        floors.take(record)
    assert floors.seen == expected
    assert floors.floor("never-seen") == 0


def test_versions_in_evidence_are_searched_to_a_bounded_depth() -> None:
    deep: object = {"flag_version": 5}
    for _ in range(10):
        deep = {"part": deep}
    assert list(versions_in(deep)) == []
    assert list(versions_in({"a": {"b": {"flag_version": 5}}})) == [5]


def test_a_floor_only_rises() -> None:
    floors = VersionFloors()
    floors.saw("a", 4)
    floors.saw("a", 2)
    assert floors.floor("a") == 4


# -- a start on the floor --------------------------------------------------------------


def start(floor: int, at: datetime | None = None, cid: str = "c-start") -> CommandInput:
    return CommandInput(
        action=CommandAction.START,
        flag="checkout",
        command_id=cid,
        actor="ana",
        now=T0,
        plan=PLAN,
        at=at,
        new_rollout_id=f"r-{cid}",
        new_salt="salt",
        version_floor=floor,
    )


def promote(now: datetime, cid: str) -> CommandInput:
    action = CommandAction.PROMOTE
    return CommandInput(action=action, flag="checkout", command_id=cid, actor="bo", now=now)


def ended_at(version: int) -> Rollout:
    """A flag whose rollout ended, last published at ``version``."""
    state, _ = step(None, start(0))
    assert state is not None
    ended = {"phase": Phase.ABORTED, "flag_version": version, "stage_versions": {0: [version]}}
    return state.model_copy(update=ended)


@pytest.mark.parametrize(
    ("stored", "floor", "first"),
    [
        (None, 0, 1),
        (None, 3, 4),  # the store lost the flag; the topics saw version 3
        (4, 0, 5),  # the store knows the flag: it counts on
        (4, 9, 10),  # the topics saw more than the store holds
        (12, 9, 13),
    ],
)
def test_a_start_numbers_its_first_version_above_the_store_and_the_floor(
    stored: int | None, floor: int, first: int
) -> None:
    before = None if stored is None else ended_at(stored)
    state, actions = step(before, start(floor, cid="c-new"))
    assert state is not None
    assert state.phase is Phase.RUNNING
    assert state.flag_version == first
    assert state.stage_versions == {0: [state.flag_version]}
    assert isinstance(actions[0], PublishFlagState)


def test_each_stage_after_a_floored_start_counts_only_its_own_versions() -> None:
    state, _ = step(None, start(40))
    for n, stage in enumerate((1, 2), 1):
        state, _ = step(state, promote(T0 + timedelta(minutes=n), f"c-promote-{n}"))
        assert state is not None
        assert state.stage == stage
    assert state is not None
    assert state.stage_versions == {0: [41], 1: [42], 2: [43]}
    assert all(v > 40 for v in state.stage_flag_versions())


def test_a_scheduled_start_keeps_the_floor_until_it_fires() -> None:
    at = T0 + timedelta(hours=1)
    pending, actions = step(None, start(20, at=at))
    assert pending is not None
    assert pending.phase is Phase.PENDING
    assert not any(isinstance(a, PublishFlagState) for a in actions)
    fired, _ = step(pending, TickInput(at))
    assert fired is not None
    assert fired.phase is Phase.RUNNING
    assert fired.flag_version == 21
    assert fired.stage_flag_versions() == {21}


def test_a_floor_on_a_flag_that_is_running_changes_nothing() -> None:
    running, _ = step(None, start(0))
    assert running is not None
    again, _ = step(running, dataclasses.replace(start(99), command_id="c-again"))
    assert again == running  # refused: a rollout is already running
