"""What ``/rollouts`` and ``rolloutctl status`` show: each rollout with a fresh gate view."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from controller.core.common import StoreError
from controller.core.machine import evaluate
from controller.core.reading import RolloutStatus, describe
from controller.core.rollouts import Verdict, Window
from controller.daemon.rollouts import EvidenceWatch, SourceReadings
from controller.ports import AggregateReader, Loaded, RolloutStates


class StatusView:
    """Each rollout (or one flag's) as :func:`describe` shows it, with a fresh gate view.

    Read-only: the verdict is computed, never applied, and the advisor is not
    asked. Every rollout is read in a fixed number of round trips: the states
    together (:meth:`RolloutStates.load_all`), then the active stages'
    aggregates together (:meth:`AggregateReader.read_many`).
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
    ) -> None:
        self._states, self._aggregates = states, aggregates
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
        return [
            RolloutStatus.model_validate(
                {
                    **describe(r, verdicts.get(r.flag), now, self._team_windows).__dict__,
                    "stale": r.stale(now, self._stale_after),
                }
            )
            for r in rollouts
        ]


def readable(loaded: Loaded | StoreError) -> Loaded:
    """``loaded``, or its error raised: a reader that must show every flag fails on one
    it cannot read, as loading that flag alone would."""
    if isinstance(loaded, StoreError):
        raise loaded
    return loaded
