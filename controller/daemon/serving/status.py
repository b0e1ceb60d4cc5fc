"""What ``/rollouts`` and ``rolloutctl status`` show: each rollout with a fresh gate view."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from controller.core.common import StoreError
from controller.core.holdouts import cohort_check, ratio_text
from controller.core.machine import evaluate
from controller.core.reading import HoldoutCheck, RolloutStatus, describe
from controller.core.rollouts import Rollout, Verdict, Window
from controller.core.stats import FlagAggregates
from controller.daemon.rollouts import EvidenceWatch, SourceReadings
from controller.daemon.serving.holdouts import CellRead, published
from controller.ports import AggregateReader, Loaded, RolloutStates


class StatusView:
    """Each rollout (or one flag's) as :func:`describe` shows it, with a fresh gate view.

    Read-only: the verdict is computed, never applied, and the advisor is not
    asked. Every rollout is read in a fixed number of round trips: the states
    together (:meth:`RolloutStates.load_all`), then the active stages'
    aggregates together (:meth:`AggregateReader.read_many`), then, where ``holdouts`` is
    given, the cells of the holdouts the plans name together (a rollout whose apps send no
    holdout cohort says so, as the holdout's report does).
    """

    def __init__(
        self,
        *,
        states: RolloutStates,
        aggregates: AggregateReader,
        stale_after: timedelta,
        clock: Callable[[], datetime],
        team_windows: tuple[Window, ...] = (),
        sources: SourceReadings | None = None,
        evidence: EvidenceWatch | None = None,
        holdouts: CellRead | None = None,
    ) -> None:
        self._states, self._aggregates = states, aggregates
        self._holdouts = holdouts
        self._evidence = evidence  # the partitions ingest holds or lags on
        self._sources = sources  # what this instance last read from Prometheus
        self._stale_after, self._now = stale_after, clock
        self._team_windows = team_windows  # a window wait says when they open

    async def __call__(self, flag: str | None = None) -> list[RolloutStatus]:
        if flag is not None:
            found = [(await self._states.load(flag)).rollout]
        else:
            every = (await self._states.load_all()).values()
            found = [readable(loaded).rollout for loaded in every]
        rollouts = [r for r in found if r is not None]
        active = [r for r in rollouts if r.phase.active]
        data = await self._aggregates.read_many([(r.flag, r.stage_flag_versions()) for r in active])
        now = self._now()
        counted = None
        if self._evidence is not None and active:
            await self._evidence.refresh()
            counted = self._evidence.view(now)
        verdicts: dict[str, Verdict] = {}
        for r, d in zip(active, data, strict=True):
            sourced = self._sources.view(r, now) if self._sources else None
            verdict = evaluate(r, d, now, sourced, counted)
            if self._evidence and counted is not None:
                # about to move or past its planned end: it waits, as its gate does, for
                # the broker's log ends
                checked = await self._evidence.checked(r, verdict.kind, now, counted)
                verdict = verdict if checked is counted else evaluate(r, d, now, sourced, checked)
            verdicts[r.flag] = verdict
        held = await self.held_out(rollouts)
        return [
            RolloutStatus.model_validate(
                {
                    **describe(r, verdicts.get(r.flag), now, self._team_windows).__dict__,
                    "holdout": held.get(r.flag),
                    "stale": r.stale(now, self._stale_after),
                }
            )
            for r in rollouts
        ]

    async def held_out(self, rollouts: Sequence[Rollout]) -> dict[str, HoldoutCheck]:
        """The holdout check of each rollout whose plan names one, in one read (the
        console's list reads its rows' with it)."""
        naming = [r for r in rollouts if r.plan.holdout is not None]
        if self._holdouts is None or not naming:
            return {}
        cells, _ = await self._holdouts([(r.flag, published(r)) for r in naming])
        return {r.flag: holdout_check(r, c) for r, c in zip(naming, cells, strict=True)}


def holdout_check(rollout: Rollout, cells: FlagAggregates) -> HoldoutCheck:
    """``rollout``'s holdout check from its cells: everyone else in the treatment's place,
    the holdout in the control's."""
    holdout = rollout.plan.holdout
    assert holdout is not None
    srm = cohort_check(cells.treatment, cells.control, holdout)
    return HoldoutCheck(
        holdout=holdout.name, missing=srm.missing == "control", text=ratio_text(srm)
    )


def readable(loaded: Loaded | StoreError) -> Loaded:
    """``loaded``, or its error raised: a reader that must show every flag fails on one
    it cannot read, as loading that flag alone would."""
    if isinstance(loaded, StoreError):
        raise loaded
    return loaded
