"""Consulting the advisor at stage gates, in the background, so a slow model delays nothing.

In ``advisory`` mode the statistics decide at once: the gate advances, and the
opinion on that advance is asked in the background (once per stage) and
recorded as a decision of its own when it arrives, or recorded as missing. It
holds nothing, alerts nothing and changes no timing.

In ``gating`` mode a running stage the statistics would advance starts one consultation for its
flag; the gate loop goes on gating every flag meanwhile, so a rollback never
waits for the model. When the advice arrives the stage is evaluated again on
fresh aggregates, and the advice is applied only to the same stage, still
ready to advance (otherwise as a hold, which changes nothing but still
carries an outage alert). An outage raises one alert, whichever flag saw its
first failure; the next success ends it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog

from controller.core.machine import evaluate, held_for_advice
from controller.core.rollouts import (
    Briefing,
    GateInput,
    Input,
    OpinionInput,
    Phase,
    Rollout,
    Unavailable,
    Verdict,
    VerdictKind,
)
from controller.daemon.metrics import Metrics
from controller.daemon.rollouts.completeness import EvidenceWatch
from controller.daemon.rollouts.rollouts import stage_key
from controller.daemon.rollouts.sources import SourceReadings
from controller.ports import Advisor, AggregateReader, RolloutStates
from controller.settings import LlmSettings

log = structlog.get_logger("controller.daemon.rollouts.consulting")


class Consultations:
    """The advisor's consultations under way, one per flag at most."""

    def __init__(
        self,
        *,
        advisor: Advisor | None,
        llm: LlmSettings,
        metrics: Metrics,
        states: RolloutStates,
        aggregates: AggregateReader,
        apply: Callable[[str, Input], Awaitable[None]],
        clock: Callable[[], datetime],
    ) -> None:
        self._advisor = advisor if llm.mode != "off" else None
        self._llm, self._metrics = llm, metrics
        self._states, self._aggregates = states, aggregates
        self._apply, self._now = apply, clock
        self._advisor_down = False
        self._consulting: dict[str, asyncio.Task[None]] = {}
        self._opining: set[asyncio.Task[None]] = set()
        # The stage each flag's last opinion was asked at: one opinion per stage.
        self._opined: dict[str, tuple[str, int, int]] = {}
        self.sources: SourceReadings | None = None
        """Where a re-check reads the guardrails a metric source feeds, when any."""
        self.evidence: EvidenceWatch | None = None
        """The partitions ingest holds or lags on, which a re-check waits for too."""

    async def cancel(self) -> None:
        """Stop every consultation; one cut short loses nothing, the next gate asks again."""
        tasks = [*self._consulting.values(), *self._opining]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def needs_advice(self, rollout: Rollout, verdict: Verdict, now: datetime) -> bool:
        """Only a running stage the statistics would advance waits for the model, in gating.

        Rollbacks, pauses and holds never wait for it; a paused rollout or one
        the advisor holds would not act on the advice, so it is not asked; nor
        is a watch after 100%, which the clock and the statistics end. In
        advisory mode nothing waits (see :meth:`wants_opinion`).
        """
        if self._llm.mode != "gating":
            return False
        return self._would_advance(rollout, verdict, now)

    def wants_opinion(self, flag: str, rollout: Rollout, verdict: Verdict, now: datetime) -> bool:
        """In advisory mode, a stage the statistics advance gets one opinion, asked after."""
        if self._llm.mode != "advisory" or not self._would_advance(rollout, verdict, now):
            return False
        return self._opined.get(flag) != stage_key(rollout)

    def _would_advance(self, rollout: Rollout, verdict: Verdict, now: datetime) -> bool:
        if self._advisor is None or rollout.phase is not Phase.RUNNING or rollout.watching:
            return False
        held = rollout.advisor_hold_until is not None and now < rollout.advisor_hold_until
        return verdict.kind is VerdictKind.ADVANCE and not held

    def ask_opinion(self, flag: str, rollout: Rollout, verdict: Verdict, now: datetime) -> None:
        """Ask for the opinion on the advance decided at ``now``; record it when it comes."""
        self._opined[flag] = stage_key(rollout)
        task = asyncio.create_task(self._opinion(flag, rollout, verdict, now), name=f"opine-{flag}")
        self._opining.add(task)
        task.add_done_callback(self._opining.discard)

    async def _opinion(self, flag: str, asked: Rollout, verdict: Verdict, now: datetime) -> None:
        assert self._advisor is not None  # wants_opinion said so
        advice = await self._advisor.advise(gate_data(asked, verdict, now))
        if isinstance(advice, Unavailable):
            self._metrics.advisor_failures.inc()
            log.info("advisory_opinion_missing", flag=flag, cause=advice.cause)
        else:
            self._metrics.advisor_seconds.observe(advice.latency_ms / 1000)
        try:
            await self._apply(flag, OpinionInput(asked, now, advice, self._now()))
        except Exception as exc:  # a background task: the opinion is lost, nothing else
            log.warning("opinion_not_recorded", flag=flag, error=repr(exc)[:500])

    def start(self, flag: str, rollout: Rollout, verdict: Verdict, now: datetime) -> list[Input]:
        """Ask the advisor in the background, unless a consultation for ``flag`` runs; what
        to offer the machine first: a hold recording the final look ``verdict`` took, so the
        gates that run meanwhile and the re-check do not look again."""
        recorded = held_for_advice(verdict)
        first: list[Input] = [] if recorded is None else [GateInput(recorded, now)]
        running = self._consulting.get(flag)
        if running is not None and not running.done():
            return first
        task = asyncio.create_task(
            self._advise_then_gate(flag, rollout, verdict, now), name=f"advise-{flag}"
        )
        self._consulting[flag] = task
        task.add_done_callback(lambda t, f=flag: self._consulted(f, t))  # type: ignore[misc]
        return first

    async def done(self) -> None:
        """Wait until every consultation under way has been applied or dropped."""
        tasks = [*self._consulting.values(), *self._opining]
        await asyncio.gather(*tasks, return_exceptions=True)

    def _consulted(self, flag: str, task: asyncio.Task[None]) -> None:
        if self._consulting.get(flag) is task:
            del self._consulting[flag]

    async def _advise_then_gate(
        self, flag: str, asked: Rollout, verdict: Verdict, now: datetime
    ) -> None:
        """Get the advice, then apply it if the stage is still ready to advance.

        Outdated advice is dropped, but an outage it revealed is still alerted.
        """
        gate = await self.with_advice(asked, verdict, now)
        try:
            fresh = await self._recheck(flag, asked)
            if fresh.kind is not VerdictKind.ADVANCE:
                log.info("advice_outdated", flag=flag, reason=fresh.reason)
            await self._apply(flag, dataclasses.replace(gate, verdict=fresh, now=self._now()))
        except Exception as exc:  # a background task: log it; the next gate pass asks again
            log.warning("advice_not_applied", flag=flag, error=repr(exc)[:500])
            if gate.advisor_alert:  # not published: let the next failure alert instead
                self._advisor_down = False

    async def _recheck(self, flag: str, asked: Rollout) -> Verdict:
        """The stage's verdict on fresh aggregates if it is still ready to advance.

        Otherwise a hold saying why the advice no longer applies: a hold changes
        nothing, yet the machine still raises an outage alert the advice carries.
        """
        rollout = (await self._states.load(flag)).rollout
        if rollout is None or stage_key(rollout) != stage_key(asked):
            return Verdict(VerdictKind.HOLD, "the stage changed meanwhile")
        data = await self._aggregates.read(flag, rollout.stage_flag_versions())
        now = self._now()
        sourced = None if self.sources is None else self.sources.for_gate(rollout, now)
        counted = None if self.evidence is None else self.evidence.view(now)
        fresh = evaluate(rollout, data, now, sourced, counted)
        if fresh.kind is VerdictKind.ADVANCE and self.evidence is not None and counted is not None:
            checked = await self.evidence.before_moving(rollout, now, counted)
            fresh = fresh if checked is counted else evaluate(rollout, data, now, sourced, checked)
        if fresh.kind is not VerdictKind.ADVANCE:
            return Verdict(VerdictKind.HOLD, f"the gate now says {fresh.kind}")
        return fresh

    async def with_advice(self, rollout: Rollout, verdict: Verdict, now: datetime) -> GateInput:
        """The gate input, with the advisor's result when the statistics say advance.

        The advisor is never asked about a rollback, a pause or a hold: those
        never wait for it. An outage raises one alert, not one per gate: the
        first failure after a success (or since start) carries ``advisor_alert``,
        which the machine turns into an alert whatever it does with the verdict;
        the next success ends the outage.
        """
        if self._advisor is None or not self.needs_advice(rollout, verdict, now):
            return GateInput(verdict, now)
        advice = await self._advisor.advise(gate_data(rollout, verdict, now))
        down = isinstance(advice, Unavailable)
        first_failure, self._advisor_down = down and not self._advisor_down, down
        if isinstance(advice, Unavailable):
            self._metrics.advisor_failures.inc()
            log.warning("advisor_unavailable", flag=rollout.flag, cause=advice.cause)
        else:
            self._metrics.advisor_seconds.observe(advice.latency_ms / 1000)
        return GateInput(
            verdict,
            now,
            advice=advice,
            advisor_mode=self._llm.mode,
            advisor_hold=timedelta(seconds=self._llm.hold_seconds),
            advisor_alert=first_failure,
        )


def gate_data(rollout: Rollout, verdict: Verdict, now: datetime) -> Briefing:
    """What the advisor is shown: the gate's numbers and, as untrusted text, names."""
    following = rollout.plan.stages[min(rollout.stage + 1, len(rollout.plan.stages) - 1)]
    return Briefing(
        flag=rollout.flag,
        plan=rollout.plan.name,
        operator_reason=rollout.note,
        stage=rollout.stage,
        stages=len(rollout.plan.stages),
        percent=rollout.percent,
        next_percent=following.percent,
        time_in_stage_s=round((now - rollout.stage_started_at).total_seconds()),
        statistical_verdict=verdict.kind.value,
        statistical_reason=verdict.reason,
        evidence=verdict.evidence,
    )
