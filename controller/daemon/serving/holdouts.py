"""What ``GET /holdouts/{name}`` and ``rolloutctl report --holdout`` show: a holdout compared.

Every rollout of the environment whose plan names the holdout is read: its
cells over every flag version it published (each stage's, and the one it
serves now), everyone else's cells summed against the holdout's in one read
(:data:`controller.adapters.redis.HOLDOUT_CELLS`), with every flag's together
beside them for the units counted once over the flags, then compared by
:func:`controller.core.holdouts.holdout_report`. Read-only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime

from controller.core.common import StoreError, environment_of
from controller.core.holdouts import FlagCells, HoldoutReport, People, holdout_report
from controller.core.release import Environments
from controller.core.rollouts import Rollout
from controller.core.stats import FlagAggregates
from controller.ports import RolloutStates

CellRead = Callable[
    [Sequence[tuple[str, Iterable[int]]]], Awaitable[tuple[list[FlagAggregates], FlagAggregates]]
]
"""Everyone else (in the treatment's place) and the holdout (the control's), per flag, and
every flag's together (a unit counted once however many flags saw it)."""


class HoldoutView:
    """A holdout of one environment compared, from the stored rollouts naming it."""

    def __init__(
        self,
        *,
        states: RolloutStates,
        read: CellRead,
        environments: Callable[[], Environments],
    ) -> None:
        self._states, self._read, self._environments = states, read, environments

    async def __call__(
        self, name: str, environment: str | None, alpha: float, since: datetime | None = None
    ) -> HoldoutReport | None:
        """The report of the rollouts naming ``name`` (started at or after ``since``); None
        where no rollout of the environment does."""
        default = self._environments().default
        where = environment or default
        naming: list[Rollout] = []
        for key, loaded in sorted((await self._states.load_all()).items()):
            if isinstance(loaded, StoreError):
                raise loaded
            rollout = loaded.rollout
            held = None if rollout is None else rollout.plan.holdout
            if rollout is None or held is None or held.name != name:
                continue
            if since is not None and rollout.started_at < since:
                continue
            if environment_of(key, default) == where:
                naming.append(rollout)
        if not naming:
            return None
        versions = [published(r) for r in naming]
        wanted = [(r.flag, v) for r, v in zip(naming, versions, strict=True)]
        data, together = await self._read(wanted)
        people = People(rest=together.treatment.units, holdout=together.control.units)
        cells = [
            FlagCells(r.flag, r.plan, v, rest=d.treatment, holdout=d.control)
            for r, v, d in zip(naming, versions, data, strict=True)
        ]
        holdout = naming[0].plan.holdout
        assert holdout is not None
        return holdout_report(
            holdout, cells, alpha=alpha, environment=where, since=since, people=people
        )


def published(rollout: Rollout) -> tuple[int, ...]:
    """Every flag version the rollout published: each stage's, and the one it serves now."""
    versions = {v for stage in rollout.stage_versions.values() for v in stage}
    return tuple(sorted(versions | {rollout.flag_version}))
