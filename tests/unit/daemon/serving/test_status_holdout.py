"""A rollout's holdout cohort in ``/rollouts``: read with the holdout's cells, worded as the
holdout's report words it, so a rollout whose apps send no holdout cohort says so."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from controller.adapters.memory import MemoryAggregates, MemoryStates
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.stats import ArmAggregate, FlagAggregates
from controller.core.wire import Holdout
from controller.daemon.serving.status import StatusView

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


def _rollout(flag: str, holdout: Holdout | None) -> Rollout:
    plan = Plan(stages=[Stage(percent=10, min_duration=timedelta(minutes=30))], holdout=holdout)
    return Rollout(
        flag=flag,
        rollout_id=f"r-{flag}",
        plan=plan,
        phase=Phase.RUNNING,
        stage=0,
        stage_started_at=NOW - timedelta(minutes=5),
        salt="s",
        flag_version=2,
        stage_versions={0: [2]},
        started_at=NOW - timedelta(minutes=5),
        updated_at=NOW,
    )


class Cells:
    """The holdout's cells as Redis reads them: everyone else, then the held-out units."""

    def __init__(self, rest: int, held: int) -> None:
        self.rest, self.held = rest, held
        self.asked: list[list[tuple[str, tuple[int, ...]]]] = []

    async def __call__(
        self, wanted: Sequence[tuple[str, Iterable[int]]]
    ) -> tuple[list[FlagAggregates], FlagAggregates]:
        self.asked.append([(flag, tuple(versions)) for flag, versions in wanted])
        found = [self._cells(flag) for flag, _ in wanted]
        return found, self._cells("together")

    def _cells(self, flag: str) -> FlagAggregates:
        rest, held = ArmAggregate(units=self.rest), ArmAggregate(units=self.held)
        return FlagAggregates(flag=flag, versions=frozenset({2}), treatment=rest, control=held)


@pytest.mark.parametrize(
    ("rest", "held", "missing", "text"),
    [
        (2_000, 0, True, "no held-out units against 100 expected (do the apps report cohort"
         " holdout with their events?)"),
        (1_900, 100, False, "100 held-out units against 100 expected (sequential p = 1)"),
    ],
)  # fmt: skip
async def test_status_reads_the_holdout_cohort_as_the_report_does(
    rest: int, held: int, missing: bool, text: str
) -> None:
    states = MemoryStates()
    states.docs = {
        "checkout": (1, _rollout("checkout", Holdout(name="q4", percent=5))),
        "search": (1, _rollout("search", None)),
    }
    cells = Cells(rest, held)
    view = StatusView(
        states=states,
        aggregates=MemoryAggregates(),
        stale_after=timedelta(days=14),
        clock=lambda: NOW,
        holdouts=cells,
    )
    shown = {s.flag: s for s in await view()}
    checked = shown["checkout"].holdout
    assert checked is not None
    assert (checked.holdout, checked.missing, checked.text) == ("q4", missing, text)
    assert shown["search"].holdout is None  # no holdout named: nothing read for it
    assert cells.asked == [[("checkout", (2,))]]  # one read, for the rollouts naming one
