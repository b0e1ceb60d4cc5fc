"""Guardrails and limits read from a metric source, for the gate.

Pure. What is asked is :mod:`~controller.core.machine.queries`'s;
:func:`sourced_tests` turns the last readings into the tests the gate merges with
its own (:func:`~controller.core.machine.gate.evaluate`, ``sourced=``): the same
  :func:`~controller.core.stats.guardrail_result` on arm aggregates built from
  the answers (:mod:`controller.core.stats.sourced`), and each limit as a bound
  with no concurrent control.

**Never advance on missing data.** A reading that is not there, is for
another stage, or is older than ``max_age`` is *missing*: the gate holds,
naming the source and why. An answer the source gave but a guardrail cannot
use (no series, NaN, not a histogram) leaves that guardrail untested, and an
untested gating guardrail holds the stage, as one below its event floor does.
So does an arm the source no longer sees (no current sample of its series, its
newest older than ``sample_age``, an answer dated far from its asking:
:func:`~controller.core.metrics_source.sight_problem`), whose counts would
otherwise be read frozen. :attr:`Sourced.unusable` names each such reading,
dry runs included, for the daemon's alert.
Regressions on everything that *was* read still act at once, and the event-fed
guardrails do not wait on the source at all.

**The error budget** (a plan's ``burn_rate``) is no test: :attr:`Sourced.budget` says
whether forward moves wait (:func:`~controller.core.machine.waiting.forward`), each
window read once whichever of the plan's tiers share it. A window whose burn rate is
missing, stale or unusable holds its tiers as burning, never as healthy; it
holds no rollback, and it is not :attr:`Sourced.missing` (the gate itself does not hold).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.core.machine.queries import (
    ARMS,
    BURN_PREFIX,
    LIMIT_PREFIX,
    SERVICE,
    TRAFFIC,
    burn_windows,
    comparing_guardrails,
    gating_limits,
    reads_source,
    stage_of,
    traffic_guardrail,
    traffic_role,
)
from controller.core.metrics_source import (
    Answer,
    Ask,
    FlagReadings,
    PrometheusLimit,
    ReadingProblem,
    Taken,
    cumulative_buckets,
    one_number,
    scalar,
    sight_problem,
)
from controller.core.rollouts import Guardrail, Plan, Rollout, error_budget
from controller.core.stats import (
    ArmAggregate,
    FlagAggregates,
    SequentialResult,
    Shown,
    control_baseline,
    counted_arm,
    guardrail_result,
    histogram_arm,
    limit_result,
    metric_floor,
    shown_reading,
)
from controller.core.wire import ErrorBudget, SourceReadings

MAX_SAMPLE_AGE = timedelta(seconds=60)
"""The default bound on an arm's newest sample (``prometheus.max_sample_age_seconds``)."""


@dataclass(frozen=True, slots=True)
class Sourced:
    """What a metric source gives a gate: tests, limits, why any wait, and the evidence."""

    tests: dict[str, SequentialResult | None] = field(default_factory=dict)
    limits: dict[str, SequentialResult] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)
    """Why a sourced guardrail is not tested yet, by metric (the gate's hold reason)."""
    missing: tuple[str, ...] = ()
    """Why the gate must hold whatever else it finds: a reading absent, stale or unusable."""
    unusable: dict[str, str] = field(default_factory=dict)
    """By guardrail (or limit, or traffic): why its current reading cannot be used, dry runs
    included (the daemon alerts on these as on a source that does not answer)."""
    traffic: int = 0
    """Requests (or exposures) the source counted in the stage: the stage has traffic."""
    baselines: dict[str, float | None] = field(default_factory=dict)
    evidence: SourceReadings | None = None
    """What the gate's evidence keeps of the readings; None when nothing was read."""
    budget: ErrorBudget | None = None
    """The plan's burn-rate condition as read; None for a plan that names none."""


NOT_SOURCED = Sourced()
"""A plan that reads no metric source."""


def sourced_tests(
    rollout: Rollout,
    readings: FlagReadings | None,
    now: datetime,
    *,
    max_age: timedelta,
    sample_age: timedelta = MAX_SAMPLE_AGE,
) -> Sourced:
    """The gate's view of the source for the stage (see the module); an arm whose newest
    sample is older than ``sample_age``, or whose answers are dated that far from when they
    were asked, is missing (:func:`~controller.core.metrics_source.sight_problem`)."""
    plan = rollout.plan
    if not reads_source(plan):
        return NOT_SOURCED
    guardrails, limits = comparing_guardrails(rollout), gating_limits(rollout)
    readings = readings or FlagReadings(source="prometheus")
    tests: dict[str, SequentialResult | None] = {
        g.metric: None for g in plan.guardrails if g.source != "events"
    }
    out = _Gathered(tests=tests, sample_age_s=sample_age.total_seconds())
    for guardrail in guardrails:
        taken = _fresh(
            guardrail.metric,
            rollout=rollout,
            readings=readings,
            now=now,
            max_age=max_age,
            out=out,
            dry_run=guardrail.dry_run,
        )
        if taken is not None:
            _guardrail(guardrail, plan, taken, out)
    for limit in limits:
        name = LIMIT_PREFIX + limit.name
        taken = _fresh(name, rollout=rollout, readings=readings, now=now, max_age=max_age, out=out)
        if taken is not None:
            _limit(limit, plan, taken, out)
    traffic = traffic_guardrail(rollout)
    if traffic is not None:
        quiet = all(g.dry_run for g in plan.guardrails if g.source != "events")
        taken = _fresh(
            TRAFFIC,
            rollout=rollout,
            readings=readings,
            now=now,
            max_age=max_age,
            out=out,
            dry_run=quiet,
        )
        if taken is not None:
            _traffic(traffic, taken, out, quiet=quiet)
    _burns(rollout, readings, now, max_age=max_age, out=out)
    return out.sourced(readings.source, expected=rollout.percent / 100, plan=plan)


def _burns(
    rollout: Rollout, readings: FlagReadings, now: datetime, *, max_age: timedelta, out: _Gathered
) -> None:
    """The burn rate over each of the plan's windows, or why it cannot be read; a missing
    one is never :attr:`Sourced.missing` (the budget holds forward moves, not the gate)."""
    for name in burn_windows(rollout.plan):
        taken = _fresh(
            name,
            rollout=rollout,
            readings=readings,
            now=now,
            max_age=max_age,
            out=out,
            dry_run=True,
        )
        out.burns[name.removeprefix(BURN_PREFIX)] = _burn(name, taken, out)


def _burn(name: str, taken: Taken | None, out: _Gathered) -> float | str:
    """The burn rate over one window, or why it cannot be read."""
    if taken is None:
        return out.waiting[name].partition(": ")[2] or "no reading"
    shown = shown_reading(taken, {})
    out.shown[name] = shown
    try:
        value = _burn_value(taken.answers.get((SERVICE, "value")))
        _see(SERVICE, taken, out.sample_age_s)
    except ReadingProblem as exc:
        shown.problems = [str(exc)]
        out.unusable[name] = f"the burn rate over {name.removeprefix(BURN_PREFIX)}: {exc}"
        return str(exc)
    shown.value = value
    return value


def _burn_value(got: Answer | str | None) -> float:
    value = scalar(_given(got))
    if value < 0:
        raise ReadingProblem(f"a burn rate is never negative, got {value:g}")
    return value


def _traffic(guardrail: Guardrail, taken: Taken, out: _Gathered, *, quiet: bool) -> None:
    """The treated requests of a stage with no control: its traffic, nothing tested."""
    assert guardrail.prometheus is not None  # the plan model guarantees it
    role, _ = traffic_role(guardrail)
    try:
        got = _given(taken.answers.get(("treatment", role)))
        if role == "total":
            requests = round(one_number(got))
        else:
            requests = round(cumulative_buckets(got, le_unit=guardrail.prometheus.le_unit)[-1][1])
        _see("treatment", taken, out.sample_age_s)
    except ReadingProblem as exc:
        reason = f"the treated requests from Prometheus are unusable: {exc}"
        out.shown[TRAFFIC] = shown_reading(taken, {}, problems=[str(exc)])
        out.unusable[TRAFFIC] = reason
        if not quiet:
            out.missing.append(reason)
        return
    out.shown[TRAFFIC] = shown_reading(taken, {})
    out.shown[TRAFFIC].arms["treatment"] = {"requests": requests}
    out.traffic += requests


@dataclass(slots=True)
class _Gathered:
    tests: dict[str, SequentialResult | None]
    sample_age_s: float
    limits: dict[str, SequentialResult] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unusable: dict[str, str] = field(default_factory=dict)
    traffic: int = 0
    baselines: dict[str, float | None] = field(default_factory=dict)
    shown: dict[str, Shown] = field(default_factory=dict)
    burns: dict[str, float | str] = field(default_factory=dict)

    def sourced(self, source: str, *, expected: float, plan: Plan) -> Sourced:
        evidence = None
        if self.shown:
            reads = {name: shown.wire() for name, shown in self.shown.items()}
            evidence = SourceReadings.model_validate(
                {"source": source, "expected_share": expected, "reads": reads}
            )
        return Sourced(
            tests=self.tests,
            limits=self.limits,
            waiting=self.waiting,
            missing=tuple(self.missing),
            unusable=self.unusable,
            traffic=self.traffic,
            baselines=self.baselines,
            evidence=evidence,
            budget=error_budget(plan, self.burns),
        )


def _fresh(
    name: str,
    *,
    rollout: Rollout,
    readings: FlagReadings,
    now: datetime,
    max_age: timedelta,
    out: _Gathered,
    dry_run: bool = False,
) -> Taken | None:
    """The reading of ``name`` if it is for this stage and young enough; else why not."""
    taken, failing = readings.taken.get(name), readings.failing.get(name)
    why = ""
    if taken is None or taken.stage != stage_of(rollout):
        why = "no reading for this stage yet"
    elif now - taken.at > max_age:
        why = f"the last reading is {(now - taken.at).total_seconds():.0f} s old"
    if not why:
        return taken
    if failing is not None:
        why += f"; failing for {(now - failing.since).total_seconds():.0f} s: {failing.reason}"
    reason = f"{name} from {readings.source}: {why}"
    out.waiting[name] = reason
    out.shown[name] = Shown(missing=why[:500])
    if not dry_run:
        out.missing.append(reason)
    return None


def _guardrail(guardrail: Guardrail, plan: Plan, taken: Taken, out: _Gathered) -> None:
    metric, queries = guardrail.metric, guardrail.prometheus
    assert queries is not None  # the plan model guarantees it
    arms: dict[str, ArmAggregate] = {}
    problems: list[str] = []
    for arm in ARMS:
        try:
            arms[arm] = _arm(metric, arm, taken.answers, queries.le_unit)
            _see(arm, taken, out.sample_age_s)  # after: "no series" names the labels
        except ReadingProblem as exc:
            problems.append(f"{arm}: {exc}")
    shown = shown_reading(taken, arms)
    out.shown[metric] = shown
    if problems:  # no series, NaN, not a histogram: never read as "no traffic" either
        shown.problems = problems
        out.waiting[metric] = reason = f"{metric} from Prometheus unusable: " + "; ".join(problems)
        out.unusable[metric] = reason
        if not guardrail.dry_run:
            out.missing.append(reason)
        return
    data = FlagAggregates("", frozenset(), treatment=arms["treatment"], control=arms["control"])
    out.traffic += _trials(arms["treatment"]) + _trials(arms["control"])
    trials = (_trials(arms["treatment"]), _trials(arms["control"]))
    if sum(trials):  # for people only: requests cluster by unit, so no test is run on it
        shown.request_share = round(trials[0] / sum(trials), 6)
    out.tests[metric] = result = guardrail_result(guardrail, data, plan)
    out.baselines[metric] = control_baseline(guardrail, arms["control"])
    if result is None:
        floor = metric_floor(metric, plan)
        fewest = min(ARMS, key=lambda arm: _trials(arms[arm]))
        out.waiting[metric] = (
            f"{metric} from Prometheus not yet tested: {_trials(arms[fewest])} of {floor}"
            f" in {fewest}"
        )


def _arm(metric: str, arm: str, answers: Mapping[Ask, Answer | str], le_unit: str) -> ArmAggregate:
    def number(role: str) -> float:
        try:
            return one_number(_given(answers.get((arm, role))))
        except ReadingProblem as exc:
            raise ReadingProblem(f"{role}: {exc}") from None

    if (arm, "buckets") in answers:
        try:
            buckets = cumulative_buckets(_given(answers[arm, "buckets"]), le_unit=le_unit)
        except ReadingProblem as exc:
            raise ReadingProblem(f"buckets: {exc}") from None
        return histogram_arm(buckets)
    count, total = number("count"), number("total")
    if count > total * 1.01 + 1:  # increase() extrapolates each counter alone: a little over
        raise ReadingProblem(f"count {count:g} is above total {total:g}: not a share")
    return counted_arm(metric, count, total)


def _trials(arm: ArmAggregate) -> int:
    return max(arm.requests, arm.exposures)


def _limit(limit: PrometheusLimit, plan: Plan, taken: Taken, out: _Gathered) -> None:
    name = LIMIT_PREFIX + limit.name
    got = taken.answers.get(("treatment", "value"))
    shown = shown_reading(taken, {})
    out.shown[name] = shown
    try:
        value = scalar(_given(got))
        _see("treatment", taken, out.sample_age_s)
    except ReadingProblem as exc:
        shown.problems = [str(exc)]
        reason = f"limit {limit.name} from Prometheus unusable: {exc}"
        out.waiting[name] = reason
        out.unusable[name] = reason
        out.missing.append(reason)
        return
    shown.value = value
    shown.bound = {"max" if limit.max is not None else "min": limit.bound}
    result = limit_result(value, limit.bound, at_most=limit.max is not None)
    shown.test = result.evidence()
    out.limits[limit.name] = result
    out.traffic += 1  # a value, not NaN: the query found samples in the stage


def _see(arm: str, taken: Taken, bound_s: float) -> None:
    """:class:`ReadingProblem` when the source does not see ``arm`` now (a dark target, a
    sample dated far from the query): what it answers is then frozen or implausible."""
    answers = [
        got
        for (of, role), got in taken.answers.items()
        if of == arm and role != "fresh" and isinstance(got, Answer)
    ]
    newest = taken.answers.get((arm, "fresh"))
    fresh = newest if isinstance(newest, Answer) else None
    problem = sight_problem(answers, fresh, asked_at=taken.at, bound_s=bound_s)
    if problem is not None:
        raise ReadingProblem(problem)


def _given(got: Answer | str | None) -> Answer:
    if not isinstance(got, Answer):
        raise ReadingProblem(got or "not asked")
    return got
