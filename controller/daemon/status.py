"""What ``/rollouts`` and ``rolloutctl status`` show: each rollout with a fresh gate view."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from controller.core.gate import describe, evaluate
from controller.ports import AggregateReader, RolloutStates


class StatusView:
    """Each rollout (or one flag's) as :func:`describe` shows it, with a fresh gate view.

    Read-only: the verdict is computed, never applied, and the advisor is not
    asked.
    """

    def __init__(
        self,
        *,
        states: RolloutStates,
        aggregates: AggregateReader,
        stale_after: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self._states, self._aggregates = states, aggregates
        self._stale_after, self._now = stale_after, clock

    async def __call__(self, flag: str | None = None) -> list[dict[str, Any]]:
        flags = [flag] if flag is not None else sorted(await self._states.flags())
        now, out = self._now(), []
        for name in flags:
            rollout = (await self._states.load(name)).rollout
            if rollout is None:
                continue
            verdict = None
            if rollout.phase.active:
                data = await self._aggregates.read(name, rollout.stage_flag_versions())
                verdict = evaluate(rollout, data, now)
            stale = rollout.stale(now, self._stale_after)
            out.append({**describe(rollout, verdict, now), "stale": stale})
        return out
