"""What to ask a metric source for a rollout now.

Pure. :func:`planned_queries` gives each sourced guardrail's queries for both
arms while the stage has a concurrent control (below 100%), each Prometheus
limit's for the treated units where the plan's limits gate (at 100%), and, at
100%, the treated requests of the first sourced guardrail (the stage's
traffic), every placeholder filled for the stage: ``{{window}}`` is its age; and
the plan's burn rate once per window, ``{{window}}`` that window (whatever the stage).
Each arm is also asked for the newest sample of the series its queries select
(role ``fresh``), so an arm no longer scraped is seen as such.
:func:`plan_queries` fills a plan's queries for ``rolloutctl plan validate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from controller.core.common import split as split_key
from controller.core.metrics_source import (
    Answer,
    Ask,
    BurnRate,
    PrometheusLimit,
    Series,
    Stage,
    fill,
    newest_sample_query,
    parse_template,
)
from controller.core.rollouts import Guardrail, Plan, Rollout

ARMS = ("treatment", "control")
LIMIT_PREFIX = "limit:"
"""A limit's reading is kept under its name with this prefix (guardrails: their metric)."""
BURN_PREFIX = "burn_rate:"
"""The burn rate over each window is kept under its window's name with this prefix."""
SERVICE = "service"
"""What a burn-rate reading's answers are kept under in place of an arm: it has none."""
TRAFFIC = "traffic"
"""Where no arms are compared (100%), the treated requests are read under this name: the
stage's traffic, without which it would seem to have none."""


@dataclass(frozen=True, slots=True)
class PlannedQuery:
    """One query to ask: for which guardrail (its metric, or ``limit:<name>``), arm and role."""

    name: str
    arm: str
    role: str
    promql: str


def reads_source(plan: Plan) -> bool:
    """Whether any guardrail or limit of ``plan``, or its burn rate, reads a metric source."""
    limits = plan.limits.prometheus if plan.limits is not None else []
    sourced = bool(limits) or plan.burn_rate is not None
    return sourced or any(g.source != "events" for g in plan.guardrails)


def burn_windows(plan: Plan) -> dict[str, float]:
    """The reading name of each window of the plan's burn rate, with its seconds."""
    if plan.burn_rate is None:
        return {}
    named = plan.burn_rate.named_windows().items()
    return {BURN_PREFIX + name: window.total_seconds() for name, window in named}


def stage_of(rollout: Rollout) -> Stage:
    return (rollout.rollout_id, rollout.stage, rollout.stage_started_at)


def comparing_guardrails(rollout: Rollout) -> list[Guardrail]:
    """The sourced guardrails that compare arms now: none without a concurrent control."""
    if rollout.percent >= 100:
        return []
    return [g for g in rollout.plan.guardrails if g.source != "events"]


def traffic_guardrail(rollout: Rollout) -> Guardrail | None:
    """At 100%, the sourced guardrail whose treated requests say the stage has traffic."""
    if rollout.percent < 100:
        return None
    return next((g for g in rollout.plan.guardrails if g.source != "events"), None)


def traffic_role(guardrail: Guardrail) -> tuple[str, str]:
    assert guardrail.prometheus is not None  # the plan model guarantees it
    queries = guardrail.prometheus.named()
    role = "total" if "total" in queries else "buckets"
    return role, queries[role]


def gating_limits(rollout: Rollout) -> list[PrometheusLimit]:
    """The Prometheus limits that gate now: where the plan's limits do (100%)."""
    limits = rollout.plan.limits
    return list(limits.prometheus) if limits is not None and rollout.percent >= 100 else []


def planned_queries(
    rollout: Rollout,
    now: datetime,
    *,
    settle_s: float = 0.0,
    default_environment: str = "default",
) -> dict[str, list[PlannedQuery]]:
    """Each sourced guardrail's and limit's queries for the stage as of ``now``, by name;
    none while the stage is younger than ``settle_s`` and a second. :class:`UnsafeValue`
    when a value cannot be filled in (its reason names it).

    ``{{window}}`` covers the stage but its first ``settle_s``. A series born with
    the stage (a new variant's) is then read from its second scrape on, where
    Prometheus' ``increase`` extrapolates every series of one histogram alike;
    read from the series' birth, it extrapolates each ``le`` bucket by its own
    rule (``extrapolatedRate``: up to where that bucket would be zero, or half an
    interval past a 1.1-interval gap), which shifts requests between buckets and
    can fake a latency regression (docs/prometheus.md).

    ``{{flag}}`` is the flag's own key and ``{{environment}}`` the rollout's
    environment: a rollout keyed ``checkout@staging`` fills ``checkout`` and
    ``staging``, one keyed ``checkout`` the flag and ``default_environment``.
    Each arm is also asked for the newest sample of its series (role ``fresh``,
    :func:`~controller.core.metrics_source.newest_sample_query`).
    """
    window = (now - rollout.stage_started_at).total_seconds() - settle_s
    if window < 1.0 and settle_s > 0:
        return {}
    flag, environment = split_key(rollout.flag)
    filler = _Filler(
        flag, environment or default_environment, max(window, 1.0), rollout.stage_started_at
    )
    out: dict[str, list[PlannedQuery]] = {}
    for guardrail in comparing_guardrails(rollout):
        assert guardrail.prometheus is not None  # the plan model guarantees it
        labels = guardrail.prometheus.arms
        named = guardrail.prometheus.named()
        asks = [(arm, getattr(labels, arm), named) for arm in ARMS]
        out[guardrail.metric] = filler.asked(guardrail.metric, asks)
    for limit in gating_limits(rollout):
        name = LIMIT_PREFIX + limit.name
        out[name] = filler.asked(name, [("treatment", limit.arm, {"value": limit.query})])
    traffic = traffic_guardrail(rollout)
    if traffic is not None:
        assert traffic.prometheus is not None  # the plan model guarantees it
        role, text = traffic_role(traffic)
        label = traffic.prometheus.arms.treatment
        out[TRAFFIC] = filler.asked(TRAFFIC, [("treatment", label, {role: text})])
    return out | _burn_queries(rollout.plan.burn_rate, filler)


def _burn_queries(burn: BurnRate | None, filler: _Filler) -> dict[str, list[PlannedQuery]]:
    """The burn rate's query over each of its windows (it names no arm: none is filled)."""
    if burn is None:
        return {}
    out: dict[str, list[PlannedQuery]] = {}
    for name, window in burn.named_windows().items():
        over = replace(filler, window_s=window.total_seconds())
        out[BURN_PREFIX + name] = over.asked(
            BURN_PREFIX + name, [(SERVICE, SERVICE, {"value": burn.query})]
        )
    return out


@dataclass(frozen=True, slots=True)
class _Filler:
    """Fills one stage's templates, and adds each arm's newest-sample query."""

    flag: str
    environment: str
    window_s: float
    started: datetime

    def filled(self, text: str, label: str) -> str:
        return fill(
            parse_template(text),
            flag=self.flag,
            arm=label,
            window_s=self.window_s,
            start_s=self.started.timestamp(),
            environment=self.environment,
        )

    def asked(self, name: str, asks: list[tuple[str, str, dict[str, str]]]) -> list[PlannedQuery]:
        """``name``'s queries: per (arm, label value, templates by role)."""
        out: list[PlannedQuery] = []
        for arm, label, templates in asks:
            mine = [
                PlannedQuery(name, arm, role, self.filled(text, label))
                for role, text in templates.items()
            ]
            newest = newest_sample_query(q.promql for q in mine)
            fresh = [] if newest is None else [PlannedQuery(name, arm, "fresh", newest)]
            out += mine + fresh
        return out


def reading_names(rollout: Rollout) -> list[str]:
    """What :func:`planned_queries` names for the stage: its guardrails, limits, traffic."""
    names: list[str] = [g.metric for g in comparing_guardrails(rollout)]
    names += [LIMIT_PREFIX + limit.name for limit in gating_limits(rollout)]
    names += [TRAFFIC] if traffic_guardrail(rollout) is not None else []
    return [*names, *burn_windows(rollout.plan)]


def plan_queries(plan: Plan, key: str, environment: str = "default") -> list[tuple[str, str]]:
    """Every query of ``plan`` filled for the flag ``key`` (a minute into a stage), with its
    field; a key naming its environment (``checkout@staging``) fills that one, else
    ``environment``.

    ``rolloutctl plan validate`` asks the server to parse them; a flag key that
    could not be filled raises :class:`~controller.core.metrics_source.UnsafeValue`.
    """
    flag, named = split_key(key)
    filler = _Filler(flag, named or environment, 60.0, datetime.fromtimestamp(0, UTC))
    out: list[tuple[str, str]] = []
    for i, guardrail in enumerate(plan.guardrails):
        if guardrail.prometheus is None:
            continue
        arm = guardrail.prometheus.arms.treatment
        for role, text in guardrail.prometheus.named().items():
            out.append((f"guardrails[{i}].prometheus.{role}", filler.filled(text, arm)))
    for i, limit in enumerate(plan.limits.prometheus if plan.limits is not None else []):
        out.append((f"limits.prometheus[{i}].query", filler.filled(limit.query, limit.arm)))
    if plan.burn_rate is not None:
        out.append(("burn_rate.query", filler.filled(plan.burn_rate.query, SERVICE)))
    return out


ARM_LABEL = "rc_arm"
ROLE_LABEL = "rc_role"
VECTOR_ROLES = frozenset({"count", "total", "buckets", "fresh"})
"""Roles whose queries answer instant vectors, so several can be asked as one."""


def combined(queries: Sequence[PlannedQuery]) -> str | None:
    """One query asking every one of ``queries`` (one guardrail's) at once; None when they
    cannot be joined (a limit's scalar).

    Each is tagged with its arm and role by ``label_replace`` and the parts are
    joined with ``or``: the tags keep their series apart, the server evaluates them
    at one instant, and a reading costs one request instead of one per arm and role.
    Each part stands on lines of its own, so a ``#`` comment in it ends there.
    """
    if not queries or any(q.role not in VECTOR_ROLES for q in queries):
        return None
    return " or ".join(
        f'label_replace(label_replace((\n{q.promql}\n), "{ARM_LABEL}", "{q.arm}", "", ""),'
        f' "{ROLE_LABEL}", "{q.role}", "", "")'
        for q in queries
    )


def split(answer: Answer, queries: Sequence[PlannedQuery]) -> dict[Ask, Answer]:
    """The answer to :func:`combined`, back into one answer per arm and role."""
    parts: dict[Ask, list[Series]] = {(q.arm, q.role): [] for q in queries}
    for series in answer.series:
        key = (series.label(ARM_LABEL) or "", series.label(ROLE_LABEL) or "")
        if key in parts:
            labels = tuple(p for p in series.labels if p[0] not in (ARM_LABEL, ROLE_LABEL))
            parts[key].append(Series(labels, series.value, series.at))
    return {key: Answer(tuple(found)) for key, found in parts.items()}
