"""Flags the store lost are served from their last state until they are back, and the one
alert of a loss names each with where its rollout stood."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.core.rollouts import Phase, Plan, Rollout
from controller.core.rollouts.plan_parts import Stage
from controller.daemon.serving import StoreLoss, loss_alert

T0 = datetime(2026, 11, 28, 20, tzinfo=UTC)
PLAN = Plan(stages=[Stage(percent=p) for p in (1, 5, 25, 50, 100)])


def rollout(flag: str, stage: int = 2, version: int = 3) -> Rollout:
    return Rollout(
        flag=flag,
        rollout_id=f"r-{flag}",
        plan=PLAN,
        phase=Phase.RUNNING,
        stage=stage,
        stage_started_at=T0,
        salt="s",
        flag_version=version,
        stage_versions={stage: [version]},
        started_at=T0,
        updated_at=T0,
    )


A, B = rollout("a"), rollout("b", stage=0, version=1)
WHERE_A = {
    "rollout_id": "r-a",
    "phase": "running",
    "stage": "stage 3/5 (25%)",
    "percent": 25.0,
    "flag_version": 3,
}
WHERE_B = {
    "rollout_id": "r-b",
    "phase": "running",
    "stage": "stage 1/5 (1%)",
    "percent": 1.0,
    "flag_version": 1,
}


def flags(served: list[Rollout]) -> list[tuple[str, int]]:
    return sorted((r.flag, r.flag_version) for r in served)


@pytest.mark.parametrize(
    ("reads", "served"),
    [
        # (rollouts read, identity read) in turn -> what the last read serves
        ([([A, B], "id")], [("a", 3), ("b", 1)]),
        # the store came back empty: both served from their last state
        ([([A, B], "id"), ([], None)], [("a", 3), ("b", 1)]),
        ([([A, B], "id"), ([], "another")], [("a", 3), ("b", 1)]),
        # one back (rebuilt under a new version): it is served as the store has it
        ([([A, B], "id"), ([], None), ([rollout("a", version=9)], None)], [("a", 9), ("b", 1)]),
        # both back: nothing served from memory
        ([([A, B], "id"), ([], None), ([rollout("a", version=9), B], None)], [("a", 9), ("b", 1)]),
        # a flag whose state is gone from a store that kept its identity is lost too (the
        # controller never removes one: on a cluster, another master's data)
        ([([A, B], "id"), ([A], "id")], [("a", 3), ("b", 1)]),
    ],
)
def test_a_flag_that_had_a_state_is_served_until_it_is_back(
    reads: list[tuple[list[Rollout], str | None]], served: list[tuple[str, int]]
) -> None:
    loss = StoreLoss()
    loss.known("id")
    last: list[Rollout] = []
    for rollouts, marker in reads:
        last = loss.served(rollouts, marker)
    assert flags(last) == served


def test_before_the_identity_is_known_reads_are_served_as_they_are() -> None:
    loss = StoreLoss()
    assert flags(loss.served([A], None)) == [("a", 3)]
    assert flags(loss.served([], None)) == []
    assert loss.degraded() is None


def test_readiness_names_the_degraded_store_until_every_flag_is_back() -> None:
    loss = StoreLoss()
    loss.known("id")
    loss.served([A, B], "id")
    lost = loss.lose([])
    assert sorted(lost) == ["a", "b"]
    loss.known("new")
    degraded = loss.degraded()
    assert degraded is not None
    assert degraded["store"] == "redis lost the controller's data"
    assert degraded["flags"] == {"a": WHERE_A, "b": WHERE_B}
    loss.served([rollout("a", version=9)], "new")
    assert loss.lost_flags() == ["b"]
    loss.served([rollout("a", version=9), rollout("b", version=7)], "new")
    assert loss.degraded() is None


def test_the_loss_alert_names_each_flag_and_its_stage() -> None:
    alert = loss_alert({"a": A, "b": B}, rebuilding=True)
    assert (alert.kind, alert.severity) == ("store_lost", "critical")
    assert "a: rollout r-a running at stage 3/5 (25%)" in alert.summary
    assert "b: rollout r-b running at stage 1/5 (1%)" in alert.summary
    assert "rebuilt" in alert.summary
    assert alert.details["flags"] == {"a": WHERE_A, "b": WHERE_B}
    assert alert.details["rebuilding"] is True


def test_each_flag_lost_is_told_once() -> None:
    loss = StoreLoss()
    loss.known("id")
    loss.served([A, B], "id")
    loss.served([A], "id")
    assert list(loss.untold()) == ["b"]
    loss.tell(["b"])
    assert loss.untold() == {}
    loss.served([A, B], "id")  # back: a later loss of it is told again
    loss.served([A], "id")
    assert list(loss.untold()) == ["b"]


def test_the_alert_of_flags_lost_alone_says_the_identity_was_kept() -> None:
    alert = loss_alert({"b": B}, rebuilding=True, identity_lost=False)
    assert "its identity kept" in alert.summary
    assert alert.details["identity_lost"] is False


def test_a_flag_whose_state_cannot_be_read_is_not_lost() -> None:
    loss = StoreLoss()
    loss.known("id")
    loss.served([A, B], "id")
    assert flags(loss.served([A], "id", unreadable={"b"})) == [("a", 3)]
    assert loss.untold() == {}
