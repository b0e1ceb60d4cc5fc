"""Reading guardrails from a metric source off the gate loop, one task per flag.

The gate never waits on Prometheus. Each active rollout whose plan reads a
source has a task of its own here that asks the source for the stage's
queries (:func:`~controller.core.machine.sourced.planned_queries`) every
``prometheus.interval_seconds``, each query under its own deadline, and keeps
the last answers taken with their time; the gate loop reads what is kept,
at once (:meth:`SourceReadings.for_gate`), and the pure gate decides on it
(:func:`~controller.core.machine.sourced.sourced_tests`). So:

* one flag's slow or hostile query delays only that flag's next reading: no
  other flag's gate, no kill, no rollback on events waits for it;
* a guardrail's queries are asked together and kept together, so a count and
  its total always agree; a try that fails keeps the answers taken before,
  which go stale after ``max_age_seconds``: then the gate holds, naming the
  source and the failure, and never advances on what it could not read;
* an answer a guardrail cannot use (no series, NaN, an arm no longer
  scraped, a sample dated far from the query) counts as a failure from the
  first reading that gave it, as a source that does not answer does;
* a flag whose readings fail for ``alert_after_seconds`` raises one
  ``metric_source_unavailable`` alert naming the server and its setting, and
  one ``metric_source_recovered`` when they read again.

A new stage wakes its flag's task, so its first reading does not wait a
whole interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Self

import structlog

from controller.core.common import ControllerError
from controller.core.machine import (
    PlannedQuery,
    Sourced,
    combined,
    planned_queries,
    reading_names,
    reads_source,
    sourced_tests,
    split,
    stage_of,
)
from controller.core.metrics_source import (
    Answer,
    Ask,
    Failing,
    FlagReadings,
    Taken,
    UnsafeValue,
)
from controller.core.release import DEFAULT_ENVIRONMENT
from controller.core.rollouts import RaiseAlert, Rollout
from controller.core.wire import JsonObject
from controller.ports import MetricSource
from controller.settings import PrometheusSettings

log = structlog.get_logger("controller.daemon.rollouts.sources")
FlagAlert = Callable[[str, RaiseAlert], None]
"""Raises an alert about one flag (the daemon's alarms, off the caller's path)."""
NOT_SET = "prometheus (setting prometheus.url is not set)"


@dataclass(slots=True)
class _Followed:
    """One flag's task, the rollout it reads for, and what it read."""

    rollout: Rollout
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    readings: FlagReadings = field(default_factory=lambda: FlagReadings(NOT_SET))
    alerted: bool = False


class SourceReadings:
    """The last readings of every followed flag's sourced guardrails; use with ``async with``."""

    def __init__(
        self,
        *,
        source: MetricSource | None,
        settings: PrometheusSettings,
        clock: Callable[[], datetime],
        alert: FlagAlert,
    ) -> None:
        self._source, self._settings, self._now, self._alert = source, settings, clock, alert
        self._where = source.where if source is not None else NOT_SET
        self._max_age = timedelta(seconds=settings.max_age_seconds)
        self._sample_age = timedelta(seconds=settings.max_sample_age_seconds)
        self.default_environment: Callable[[], str] = lambda: DEFAULT_ENVIRONMENT
        """The name ``{{environment}}`` takes for a rollout of the default environment."""
        self._followed: dict[str, _Followed] = {}
        self.asked = 0
        """Queries asked since start (the benchmark's queries per gate)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def for_gate(self, rollout: Rollout, now: datetime) -> Sourced | None:
        """What the gate reads of the source for ``rollout`` now; None for a plan reading none.

        Follows the flag from now on (its task starts, or is woken for a new stage).
        """
        if not reads_source(rollout.plan):
            self.forget(rollout.flag)
            return None
        followed = self._follow(rollout)
        if self._source is None and not followed.alerted:  # nothing will ever read it
            followed.alerted = True
            summary = f"{rollout.flag}: its plan reads {NOT_SET}; the stage holds"
            self._alert(rollout.flag, RaiseAlert("metric_source_unavailable", "warning", summary))
        return self._tests(rollout, followed.readings, now)

    def view(self, rollout: Rollout, now: datetime) -> Sourced | None:
        """:meth:`for_gate` for a view: what is kept, without following the flag.

        Safe from another thread (the read worker's): it only reads what a
        task replaced whole.
        """
        if not reads_source(rollout.plan):
            return None
        followed = self._followed.get(rollout.flag)
        readings = followed.readings if followed is not None else FlagReadings(self._where)
        return self._tests(rollout, readings, now)

    def _tests(self, rollout: Rollout, readings: FlagReadings, now: datetime) -> Sourced:
        return sourced_tests(
            rollout, readings, now, max_age=self._max_age, sample_age=self._sample_age
        )

    def readings(self, flag: str) -> FlagReadings | None:
        """The flag's readings as kept (for views); None when the flag is not followed."""
        followed = self._followed.get(flag)
        return None if followed is None else followed.readings

    def forget(self, flag: str) -> None:
        """Stop reading for ``flag`` (its rollout ended, or another instance gates it)."""
        followed = self._followed.pop(flag, None)
        if followed is not None and followed.task is not None:
            followed.task.cancel()

    def retain(self, flags: set[str]) -> None:
        """Forget every followed flag not in ``flags``."""
        for flag in set(self._followed) - flags:
            self.forget(flag)

    async def close(self) -> None:
        tasks = [f.task for f in self._followed.values() if f.task is not None]
        self._followed.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _follow(self, rollout: Rollout) -> _Followed:
        followed = self._followed.get(rollout.flag)
        if followed is None:
            followed = self._followed[rollout.flag] = _Followed(rollout)
            followed.readings = FlagReadings(self._where)
        elif stage_of(followed.rollout) != stage_of(rollout) or followed.rollout != rollout:
            new_stage = stage_of(followed.rollout) != stage_of(rollout)
            followed.rollout = rollout
            if new_stage:
                followed.wake.set()
        if self._source is not None and (followed.task is None or followed.task.done()):
            followed.task = asyncio.create_task(
                self._read(rollout.flag, followed, self._source), name=f"source-{rollout.flag}"
            )
        return followed

    async def _read(self, flag: str, followed: _Followed, source: MetricSource) -> None:
        """Read the flag's queries every interval until forgotten.

        The first reading is at once; the next ones fall at the flag's own phase of
        the interval (from its key), so flags followed together do not all ask the
        source in the same instant, which would queue their queries past the deadline.
        """
        interval = self._settings.interval_seconds
        phase = zlib.crc32(flag.encode()) % 1000 / 1000 * interval
        loop = asyncio.get_running_loop()
        while True:
            followed.wake.clear()
            try:
                await self._once(flag, followed, source)
            except Exception as exc:  # a bug here must not end the reading: log, try again
                log.warning("source_read_failed", flag=flag, error=repr(exc)[:500])
            wait = interval - (loop.time() - phase) % interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(followed.wake.wait(), wait)

    async def _once(self, flag: str, followed: _Followed, source: MetricSource) -> None:
        rollout, now = followed.rollout, self._now()
        planned = _planned(rollout, now, self._settings, self.default_environment())
        if not planned:
            return
        names = list(planned)
        self.asked += sum(_requests(planned[n]) for n in names)
        tried = await asyncio.gather(*(_ask(source, planned[n], now) for n in names))
        readings = followed.readings
        # A name no longer asked (a guardrail at 100%) no longer fails: it would hold the
        # alert raised, or raise one, for what is not read any more.
        taken = dict(readings.taken)
        failing = {name: f for name, f in readings.failing.items() if name in planned}
        for name, outcome in zip(names, tried, strict=True):
            if isinstance(outcome, str):
                _fail(failing, name, outcome, now)
            else:
                answers, queries = outcome
                taken[name] = Taken(stage_of(rollout), now, answers, queries)
                failing.pop(name, None)
        for name, reason in self._unusable(rollout, taken, now).items():
            if name in names and name not in failing:
                _fail(failing, name, reason, now, since=readings.failing.get(name))
        followed.readings = FlagReadings(self._where, taken, failing)
        self._alarm(flag, followed, now)

    def _unusable(self, rollout: Rollout, taken: dict[str, Taken], now: datetime) -> dict[str, str]:
        """Why each reading a guardrail cannot use is unusable, once the stage's window is
        ``max_sample_age_seconds`` long: a shorter one may not yet hold two scrapes of a
        series, so ``increase`` over it answers no series while all is well (it holds the
        stage all the same, with its reason)."""
        window = now - rollout.stage_started_at - timedelta(seconds=self._settings.settle_seconds)
        if window < self._sample_age:
            return {}
        return self._tests(rollout, FlagReadings(self._where, taken), now).unusable

    def _alarm(self, flag: str, followed: _Followed, now: datetime) -> None:
        """One alert once the flag's readings fail past the grace; one when they recover."""
        failing = followed.readings.failing
        if not failing and followed.alerted:
            followed.alerted = False
            summary = f"{flag}: {self._where} answers again; its guardrails read from it gate again"
            self._alert(flag, RaiseAlert("metric_source_recovered", "info", summary))
            return
        grace = timedelta(seconds=self._settings.alert_after_seconds)
        oldest = min(failing.values(), key=lambda f: f.since, default=None)
        if oldest is None or followed.alerted or now - oldest.since < grace:
            return
        followed.alerted = True
        seconds = (now - oldest.since).total_seconds()
        summary = (
            f"{flag}: {self._where} gave no usable answer for {seconds:.0f} s"
            f" ({oldest.reason}); the stage holds until it does"
        )
        details: JsonObject = {
            "source": self._where,
            "reason": oldest.reason[:500],
            "since": oldest.since.isoformat(),
            "guardrails": [*sorted(failing)[:20]],
        }
        log.warning("metric_source_unavailable", flag=flag, reason=oldest.reason[:500])
        self._alert(flag, RaiseAlert("metric_source_unavailable", "warning", summary, details))


def _fail(
    failing: dict[str, Failing],
    name: str,
    reason: str,
    now: datetime,
    *,
    since: Failing | None = None,
) -> None:
    """``name`` fails for ``reason``, since its failure began (``since``, or as kept)."""
    began = failing.get(name) or since
    failing[name] = Failing(reason, began.since if began is not None else now)


def _planned(
    rollout: Rollout, now: datetime, settings: PrometheusSettings, environment: str
) -> dict[str, list[PlannedQuery] | str]:
    """The stage's queries by name, or for every name why they cannot be filled."""
    try:
        return {
            **planned_queries(
                rollout, now, settle_s=settings.settle_seconds, default_environment=environment
            )
        }
    except UnsafeValue as exc:
        return dict.fromkeys(reading_names(rollout), f"its queries cannot be filled: {exc}")


def _requests(queries: list[PlannedQuery] | str) -> int:
    """The requests asking ``queries`` sends: one when they can be joined."""
    if isinstance(queries, str):
        return 0
    return 1 if combined(queries) is not None else len(queries)


async def _ask(
    source: MetricSource, queries: list[PlannedQuery] | str, at: datetime
) -> tuple[dict[Ask, Answer | str], dict[Ask, str]] | str:
    """One guardrail's queries, together: their answers, or why the source gave none.

    Queries that can be joined are asked as one (:func:`combined`): one request.
    """
    if isinstance(queries, str):  # they could not be filled: nothing to ask
        return queries
    texts = {(q.arm, q.role): q.promql for q in queries}
    joined = combined(queries)
    if joined is not None:
        try:
            parts: dict[Ask, Answer | str] = {**split(await source.query(joined, at=at), queries)}
        except ControllerError as exc:
            return f"{len(queries)} queries asked as one: {str(exc)[:400]}"
        return parts, texts
    asked = await asyncio.gather(
        *(source.query(q.promql, at=at) for q in queries), return_exceptions=True
    )
    answers: dict[Ask, Answer | str] = {}
    for query, answer in zip(queries, asked, strict=True):
        if isinstance(answer, ControllerError):
            return f"{query.arm} {query.role}: {str(answer)[:400]}"
        if isinstance(answer, BaseException):
            raise answer
        answers[query.arm, query.role] = answer
    return answers, texts
