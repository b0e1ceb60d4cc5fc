"""Rollout plans: stages, guardrails and the statistical settings of the gates.

A plan is data: pydantic validates it (from a `start` command or a YAML file)
and the gate and state machine read it. :data:`DEFAULT_PLAN` walks
1% → 5% → 25% → 50% → 100% with error-rate, p99-latency and new-failure guardrails.

Every number in a plan is finite and bounded: durations within
[0, :data:`MAX_DURATION`], counts up to :data:`MAX_COUNT`, so a typo or a
hostile command cannot start a rollout that alerts at once or never decides.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import (
    Field,
    ValidationError,
    model_validator,
)

from controller.core.common import ConfigError, load_document
from controller.core.metrics_source import BurnRate
from controller.core.rollouts.plan_parts import (
    AudienceField,
    Backend,
    Count,
    Duration,
    Frozen,
    Guardrail,
    HeavyUnits,
    Limits,
    Stage,
    TelemetryPlan,
    TimeBox,
    UnleashTarget,
    Watch,
    whole_percents,
)
from controller.core.rollouts.policy import HealthPolicy, HealthWords
from controller.core.rollouts.windows import Windows
from controller.core.rules import plan_problem, rings_problem
from controller.core.wire import ArmValues, Holdout, JsonObject, Requires

MAX_ALPHA_WEIGHT = 1000.0
"""The largest weight of a guardrail's alpha: no test is starved to nothing by a typo."""
MAX_ALPHA_WEIGHTS = 20
"""As many weights as a plan has guardrails at most."""
AlphaWeight = Annotated[float, Field(gt=0, le=MAX_ALPHA_WEIGHT, allow_inf_nan=False)]
AlphaWeightKey = Annotated[str, Field(min_length=1, max_length=256)]


class Plan(Frozen):
    """Stages in increasing percent, guardrails, and the gate's statistical settings."""

    name: Annotated[str, Field(min_length=1, max_length=128)] = "default"
    audience: AudienceField | None = Field(
        default=None,
        description="The whole rollout speaks only to this audience (text or JSON form).",
    )
    stages: Annotated[list[Stage], Field(min_length=1, max_length=20)]
    guardrails: list[Guardrail] = Field(default_factory=list, max_length=20)
    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        allow_inf_nan=False,
        description=(
            "False-rollback rate of the whole rollout: split over the guardrails (evenly, or"
            " by alpha_weights) and evenly over the compared stages."
        ),
    )
    alpha_weights: dict[AlphaWeightKey, AlphaWeight] | None = Field(
        default=None,
        max_length=MAX_ALPHA_WEIGHTS,
        description=(
            "Each gating guardrail's share of alpha by its key ({error_rate: 3, latency_p99: 1}),"
            " the weights divided by their sum; one left out weighs 1. Left out: equal shares."
        ),
    )
    n_tune: Count = Field(
        default=5000, ge=100, description="Units (both arms) the sequential bound is tightest at."
    )
    min_metric_events: Count = Field(
        default=150, ge=1, description="Events of a metric in each arm before it is tested."
    )
    srm_p_threshold: float = Field(default=0.001, gt=0, lt=0.5, allow_inf_nan=False)
    srm_action: Literal["pause", "rollback"] = "pause"
    no_traffic_grace: Duration = Field(
        default=timedelta(minutes=15), description="Pause when a stage saw no events this long."
    )
    early_advance: bool = Field(
        default=False,
        description=(
            "Advance before min_duration once every guardrail's bound excludes harm beyond"
            " its tolerance and the stage's minimum sample is met."
        ),
    )
    final_look_share: float = Field(
        default=0.5,
        ge=0,
        le=0.9,
        allow_inf_nan=False,
        description="Each guardrail's level spent once, in a fixed-horizon test, when a compared"
        " stage would first move on; the rest is the always-valid boundary's. 0: none.",
    )
    watch: Watch | None = Field(
        default=None, description="After the last stage (at 100%), watch before completing."
    )
    limits: Limits | None = Field(
        default=None,
        description=(
            "Absolute limits that gate each stage serving 100% of its audience, where no"
            " concurrent control exists (required before the last stage)."
        ),
    )
    backend: Backend | None = Field(
        default=None,
        description="Serve the rollout from a flag platform too (the flag-state topic always).",
    )
    values: ArmValues | None = Field(
        default=None,
        description="The value each arm serves, of one type (boolean, string, number, object);"
        " left out: control false, treatment true.",
    )
    requires: Requires | None = Field(
        default=None,
        description="Flags of the rollout's environment this flag requires, each with the"
        " variants it must serve (`{flag, variants}`): a unit one does not serve so is served"
        " control, and is no exposure of this rollout.",
    )
    holdout: Holdout | None = Field(
        default=None,
        description="A holdout this flag names (`{name, percent}`, the same percent on every"
        " flag naming it): that share of units, hashed from the name alone, is served control"
        " (cohort `holdout`) at every stage and after completion, compared by no gate.",
    )

    @model_validator(mode="after")
    def _stages_increase(self) -> Self:
        targeted = self.targeted
        if targeted:
            problem = rings_problem(self.audience, self.stages, limited=self.limits is not None)
            if problem:
                raise ValueError(problem)
        else:
            percents = [s.percent for s in self.stages]
            if any(b <= a for a, b in itertools.pairwise(percents)):
                raise ValueError(f"stage percents must increase, got {percents}")
        last = self.stages[-1]
        if self.watch is not None and (last.percent != 100 or last.audience is not None):
            raise ValueError("a watch needs the last stage at 100% of everyone")
        if self.backend is not None and self.backend.unleash is not None:
            audiences = [s.audience for s in self.stages]
            problem = plan_problem(self.audience, audiences) if targeted else None
            if problem:
                raise ValueError(problem)
            if self.arm_values is not None:
                raise ValueError(
                    "backend.unleash: Unleash serves a flag on or off, not the values"
                    f" of type {self.arm_values.type} this plan declares"
                )
            whole_percents(self.stages, self.watch)
        return self

    @model_validator(mode="after")
    def _sourced_metrics_once(self) -> Self:
        """A metric read from Prometheus is that guardrail's alone: evidence is keyed by it."""
        for i, guardrail in enumerate(self.guardrails):
            others = [g for j, g in enumerate(self.guardrails) if j != i]
            if guardrail.source != "events" and any(g.metric == guardrail.metric for g in others):
                raise ValueError(
                    f"guardrails.{i}: {guardrail.metric} is read from {guardrail.source} here and"
                    " guarded again by another guardrail: a plan guards each metric once"
                )
        names = [limit.name for limit in self.limits.prometheus] if self.limits else []
        if len(names) != len(set(names)):
            raise ValueError(f"limits.prometheus: names must differ, got {names}")
        return self

    @model_validator(mode="after")
    def _prerequisites_served_here(self) -> Self:
        """Unleash would serve the flag without its holdout (treatment to held-out units):
        refused, not served apart. Its prerequisites are Unleash's dependent features, whose
        limits only the parents' plans tell (``core.serving.unleash_problems``)."""
        if self.holdout is not None and self.unleash is not None:
            raise ValueError(
                "holdout: holdouts are not written to Unleash yet; a plan served by Unleash"
                " cannot name one"
            )
        return self

    @model_validator(mode="after")
    def _weights_name_gating_guardrails(self) -> Self:
        """A weight names a gating guardrail by its key: a typo would silently weigh nothing."""
        gating = {g.key for g in self.guardrails if not g.dry_run}
        dry = {g.key for g in self.guardrails if g.dry_run}
        for key in self.alpha_weights or {}:
            if key in dry:
                raise ValueError(
                    f"alpha_weights.{key}: a dry-run guardrail never acts, so it spends no alpha"
                )
            if key not in gating:
                known = ", ".join(sorted(gating)) or "none"
                raise ValueError(
                    f"alpha_weights.{key}: no gating guardrail of this plan has this key"
                    f" (its guardrails: {known})"
                )
        return self

    @property
    def targeted(self) -> bool:
        """Whether the plan names an audience: its flag states then carry rings."""
        return self.audience is not None or any(s.audience is not None for s in self.stages)

    @property
    def arm_values(self) -> ArmValues | None:
        """The declared values, or None when the arms serve false and true (no declaration)."""
        return None if self.values is None or self.values.default else self.values

    @property
    def limited_stages(self) -> int:
        """Stages gated by the plan's absolute limits: those at 100% of their audience."""
        return 0 if self.limits is None else sum(1 for s in self.stages if s.percent == 100)

    @property
    def compared_stages(self) -> int:
        """Stages with a control arm to compare against: below 100%, and a watch with a holdback."""
        stages = sum(1 for s in self.stages if s.percent < 100)
        watched = self.watch is not None and self.watch.holdback_percent > 0
        return stages + int(watched)

    @property
    def alpha_per_test(self) -> float:
        """Each test's level with equal weights: alpha / (guardrails * compared stages).

        Each test is valid however often it is peeked at within its stage, so by
        the union bound (Bonferroni) the chance that any gating guardrail in any
        stage crosses on a healthy flag is at most ``alpha``. Dry-run guardrails
        never act, so they spend none of it (they are tested at this level).
        Absolute limits count as guardrails, and the stages they gate as stages.
        With ``alpha_weights`` the gating tests' levels are :meth:`alpha_for`'s.
        """
        gating, stages = self._alpha_split()
        return self.alpha / (max(1, gating) * max(1, stages))

    def alpha_for(self, key: str) -> float:
        """The level of the sequential test of the guardrail named ``key`` (:attr:`Guardrail.key`).

        A gating guardrail's share of alpha is its weight over the sum of the weights of
        every gating test (an absolute limit weighs 1), split evenly over the stages: the
        levels still sum to ``alpha``, so the union bound holds as for equal weights.
        A dry-run guardrail spends none and is tested at :attr:`alpha_per_test`.
        """
        if not self.alpha_weights or key not in self._gating_keys():
            return self.alpha_per_test
        return self._weighted(self.alpha_weights.get(key, 1.0))

    def sequential_alpha(self, key: str) -> float:
        """The always-valid boundary's level for guardrail ``key`` in a stage with a final
        look: its level less the share the final look spends (:attr:`final_look_share`)."""
        return self.alpha_for(key) * (1.0 - self.final_look_share)

    def final_alpha(self, key: str) -> float:
        """The level of guardrail ``key``'s fixed-horizon test at its stage's final look."""
        return self.alpha_for(key) * self.final_look_share

    @property
    def limit_alpha(self) -> float:
        """The level of each absolute limit's test: a weight of 1 among the gating tests."""
        return self._weighted(1.0) if self.alpha_weights else self.alpha_per_test

    def _weighted(self, weight: float) -> float:
        _, stages = self._alpha_split()
        return self.alpha * weight / (self._total_weight() * max(1, stages))

    def _total_weight(self) -> float:
        """The gating guardrails' weights (1 each where the plan names none), and the limits'."""
        weights = self.alpha_weights or {}
        return sum(weights.get(key, 1.0) for key in self._gating_keys()) + self.limit_count

    def _gating_keys(self) -> list[str]:
        return [g.key for g in self.guardrails if not g.dry_run]

    def _alpha_split(self) -> tuple[int, int]:
        """What alpha is split over: the gating guardrails and limits, and the stages."""
        gating = sum(1 for g in self.guardrails if not g.dry_run) + self.limit_count
        return gating, self.compared_stages + self.limited_stages

    @property
    def limit_count(self) -> int:
        """How many absolute limits the plan declares (each is a test where it applies)."""
        return 0 if self.limits is None else len(self.limits.named())

    def alpha_budget(self) -> JsonObject:
        """How alpha is spent, for the evidence: the rollout's, the split and each test's level."""
        gating, stages = self._alpha_split()
        budget: JsonObject = {
            "rollout": self.alpha,
            "guardrails": gating,
            "stages": stages,
            "per_test": self.alpha / (max(1, gating) * max(1, stages)),  # alpha_per_test
        }
        if self.alpha_weights:
            total = self._total_weight()
            weights = self.alpha_weights
            budget["weights"] = {k: weights.get(k, 1.0) / total for k in self._gating_keys()}
        if self.final_look_share > 0:
            budget["final_look"] = self.final_look_share
        return budget

    @property
    def health_words(self) -> HealthWords:
        """What the plan wrote that chooses each health trigger's action (:mod:`.policy`)."""
        return HealthWords(
            health_policy=self.health_policy,
            srm_action=self.srm_action,
            guardrail_actions=tuple(g.action for g in self.guardrails),
            on_regression=self.watch.on_regression if self.watch is not None else None,
        )

    @property
    def unleash(self) -> UnleashTarget | None:
        """The Unleash feature this rollout is served from, if any."""
        return self.backend.unleash if self.backend is not None else None

    # When a rollout may move forward, and what each health trigger does.
    windows: Windows | None = Field(
        default=None,
        description=(
            "Allow and deny windows for forward moves (at most 16; deny wins);"
            " left out: the team-wide windows, [] for none."
        ),
    )
    burn_rate: BurnRate | None = Field(
        default=None,
        description="The SLO's burn rate read from Prometheus, in tiers joined by OR (each"
        " a threshold over a long and a short window; left out: the SRE workbook's three):"
        " while a tier burns over both its windows, or a window cannot be read, forward"
        " moves wait with reason error_budget.",
    )
    health_policy: HealthPolicy | None = Field(
        default=None, description="Per trigger: rollback, hold or warn (left out: the defaults)."
    )
    heavy_units: HeavyUnits | None = Field(
        default=None, description="Caps on each unit's requests, and how units are named."
    )
    time_box: TimeBox | None = Field(
        default=None,
        description="On from `starts_at` (or the start) to `ends_at`, then off by itself.",
    )
    telemetry: TelemetryPlan | None = Field(
        default=None,
        description="How the rollout is read from the app's OpenTelemetry (variants, unit,"
        " errors, conversions); left out: the defaults.",
    )


DEFAULT_PLAN = Plan(
    stages=[
        Stage(percent=1, min_duration=timedelta(minutes=30), min_units_per_arm=150),
        Stage(percent=5, min_duration=timedelta(hours=1), min_units_per_arm=500),
        Stage(percent=25, min_duration=timedelta(hours=2), min_units_per_arm=1000),
        Stage(percent=50, min_duration=timedelta(hours=4), min_units_per_arm=2000),
        Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
    ],
    guardrails=[
        Guardrail(metric="error_rate", tolerance=0.0),
        Guardrail(metric="latency_p99", tolerance=0.10, relative=True),
        Guardrail(metric="new_failures"),
    ],
    alpha_weights={"error_rate": 2},
)


def parse_plan(data: Any, *, source: str = "plan") -> Plan:
    """Validate plan data; a :class:`ConfigError` names each offending field."""
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(plan)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid {source}: {problems}") from exc


def load_plan(text: str, *, source: str = "plan", name: str = "") -> Plan:
    """A plan from YAML text, or JSON where the file ``name`` ends in ``.json``, bounded
    as :func:`load_yaml` says (its scalars read by YAML 1.2)."""
    return parse_plan(load_document(text, source=source, name=name), source=source)
