"""What the console and ``/rollouts/{flag}/history`` show, gathered from the stores.

Read-only, and cheap where it must scale: the list of every rollout reads
each state (:meth:`RolloutStates.load_all`, two round trips) and the last
history point of each active stage (one pipelined round trip), not the
aggregates, so a thousand rollouts list in one page
(``bench/console.py``). Only a rollout's own page runs a fresh gate view.
Everything read back from the stores is decoded defensively: an unreadable
point or message is skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol

import orjson
import structlog

from controller.console import holdout, pages, pipeline, rollout
from controller.console.figures import GuardrailSpec
from controller.console.rollout import RolloutPage
from controller.core.common import StoreError, split
from controller.core.holdouts import DEFAULT_ALPHA, HoldoutReport
from controller.core.reading import (
    HistoryPoint,
    HoldoutCheck,
    PipelineRun,
    RolloutHistory,
    RolloutRow,
    RolloutStatus,
    StageHistory,
    describe,
    history,
)
from controller.core.rollouts import Plan, Rollout, Window
from controller.core.rules import to_text
from controller.core.wire import Alert, Decision, decision_or_alert
from controller.ports import GateHistory, Loaded, RolloutStates

log = structlog.get_logger("controller.daemon.serving.console")

RECENT_ALERTS = 20
LIST_TTL_S = 4.0
"""The list is built at most this often, however many browsers poll it."""
Status = Callable[[str | None], Awaitable[list[RolloutStatus]]]


class PipelineReads(Protocol):
    """What the console reads of release pipelines
    (:class:`controller.daemon.rollouts.pipelines.Pipelines`)."""

    async def status(self, flag: str) -> PipelineRun | None: ...
    async def with_runs(self, flags: Collection[str]) -> set[str]: ...


HoldoutReads = Callable[[str, str | None, float, datetime | None], Awaitable[HoldoutReport | None]]
"""A holdout's report by name, environment (None: the default), alpha and since."""
HeldOut = Callable[[Sequence[Rollout]], Awaitable[Mapping[str, HoldoutCheck]]]
"""The holdout check of each of these rollouts whose plan names a holdout, by flag
(:meth:`controller.daemon.serving.status.StatusView.held_out`)."""


class ConsoleData:
    """The console's pages and the history JSON, from the rollout states and the gate history."""

    def __init__(
        self,
        *,
        states: RolloutStates,
        history: GateHistory,
        status: Status,
        clock: Callable[[], datetime],
        list_ttl_s: float = LIST_TTL_S,
        team_windows: tuple[Window, ...] = (),
        pipelines: PipelineReads | None = None,
        holdouts: HoldoutReads | None = None,
        held_out: HeldOut | None = None,
    ) -> None:
        self._states, self._history = states, history
        self._holdouts = holdouts  # none: the holdout pages answer not found
        self._held_out = held_out  # none: the list reads no holdout's cohort
        self._pipelines = pipelines  # none where the engine runs no release pipelines
        self._status, self._now = status, clock
        self._team_windows = team_windows  # a window wait in the list says when they open
        self._list_ttl = list_ttl_s
        self._list: tuple[float, str] | None = None
        self._building = asyncio.Lock()

    async def history(self, flag: str) -> RolloutHistory | None:
        """The current rollout of ``flag``'s gate history, stage by stage; None without one."""
        found = (await self._states.load(flag)).rollout
        if found is None:
            return None
        return await self._served(found)

    async def _served(self, found: Rollout) -> RolloutHistory:
        stages = len(found.plan.stages)
        raw = await self._history.points(found.flag, found.rollout_id, stages)
        return RolloutHistory(
            flag=found.flag,
            rollout_id=found.rollout_id,
            stages=[
                StageHistory(
                    stage=i,
                    percent=found.plan.stages[i].percent,
                    points=[
                        HistoryPoint.model_validate(p.as_json())
                        for p in map(history.decode, entries)
                        if p is not None
                    ],
                )
                for i, entries in enumerate(raw)
            ],
        )

    async def list_fragment(self) -> str:
        """The list of every rollout; one build serves every poll for ``list_ttl_s``."""
        async with self._building:
            if self._list is not None and time.monotonic() - self._list[0] < self._list_ttl:
                return self._list[1]
            rows = await self.rows()
            with_runs = await self._with_runs({split(r.flag)[0] for r in rows})
            fragment = pages.rollout_list(rows, await self._alerts(), pipelines=with_runs)
            self._list = (time.monotonic(), fragment)
            return fragment

    async def rows(self) -> list[RolloutRow]:
        """Every rollout as the list shows it, with its health from the last gate point and,
        where its plan names a holdout, the holdout's cohort (one read for them all)."""
        now = self._now()
        loaded = (await self._states.load_all()).values()
        for failed in (x for x in loaded if isinstance(x, StoreError)):
            log.warning("console_state_unreadable", error=str(failed))
        found = [x.rollout for x in loaded if isinstance(x, Loaded) and x.rollout is not None]
        active = [r for r in found if r.phase.active]
        latest = await self._history.latest([(r.flag, r.rollout_id, r.stage) for r in active])
        last = {r.flag: _point(raw) for r, raw in zip(active, latest, strict=True)}
        held = await self._held_out(active) if self._held_out is not None else {}
        rows = []
        for r in found:
            shown = describe(r, None, now, self._team_windows)
            if (check := held.get(r.flag)) is not None:
                shown = shown.model_copy(update={"holdout": check})
            health, reason = pages.health(shown, last.get(r.flag))
            rows.append(
                RolloutRow(
                    **shown.model_dump(),
                    active=r.phase.active,
                    health=health,
                    health_reason=reason,
                )
            )
        return rows

    async def rollout_fragment(self, flag: str) -> str | None:
        """``flag``'s page fragment; None when it has no rollout."""
        found = (await self._states.load(flag)).rollout
        if found is None:
            return None
        status = await self._status(flag)
        messages = [m for m in map(_message, await self._history.messages(flag)) if m]
        page = RolloutPage(
            status=status[0] if status else describe(found, None, self._now(), self._team_windows),
            history=await self._served(found),
            messages=[m for m in messages if m.rollout_id in (found.rollout_id, None)],
            stages=[s.percent for s in found.plan.stages],
            rings=_rings(found.plan),
            audience="" if found.plan.audience is None else to_text(found.plan.audience),
            guardrails=[
                GuardrailSpec(g.key, g.tolerance, g.lower_is_better, g.dry_run)
                for g in found.plan.guardrails
            ],
        )
        detail = rollout.rollout_detail(page)
        plain = split(flag)[0]
        links = "" if found.plan.holdout is None else holdout.holdout_link(found.plan.holdout.name)
        if plain in await self._with_runs({plain}):
            links = pages.pipeline_link(plain) + links
        head, mark, rest = detail.partition("</h1>")
        return f"{head}{mark}{links}{rest}"

    async def holdout_fragment(self, name: str) -> str | None:
        """Holdout ``name``'s page fragment (the default environment's); None when no rollout
        there names it."""
        if self._holdouts is None:
            return None
        found = await self._holdouts(name, None, DEFAULT_ALPHA, None)
        return None if found is None else holdout.holdout_detail(found)

    async def pipeline_fragment(self, flag: str) -> str | None:
        """``flag``'s pipeline page fragment (its newest run); None when it has none."""
        found = await self._pipelines.status(flag) if self._pipelines is not None else None
        return None if found is None else pipeline.pipeline_detail(found)

    async def _with_runs(self, flags: Collection[str]) -> set[str]:
        return set() if self._pipelines is None else await self._pipelines.with_runs(flags)

    async def _alerts(self) -> list[Alert]:
        raw = await self._history.recent_alerts(RECENT_ALERTS)
        return [m for m in map(_message, raw) if isinstance(m, Alert)]


def _point(raw: bytes | None) -> HistoryPoint | None:
    point = history.decode(raw) if raw is not None else None
    return HistoryPoint.model_validate(point.as_json()) if point is not None else None


def _message(raw: bytes) -> Decision | Alert | None:
    """A decision or alert read back from the store; None for one that breaks its contract."""
    try:
        return decision_or_alert(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return None


def _rings(plan: Plan) -> list[str]:
    """Each stage's ring in the rule text form (``everyone`` when it names none); none when
    the plan is untargeted."""
    if not plan.targeted:
        return []
    return ["everyone" if s.audience is None else to_text(s.audience) for s in plan.stages]
