"""Gate history: what each gate evaluation saw, kept small enough to keep for every rollout.

Pure. The engine gates a busy flag several times a second; the history keeps
one :class:`GatePoint` at most every ``min_interval_s`` seconds, and the
interval grows with the stage's age (:func:`due`), so the points of a stage
grow with the logarithm of its length (with the defaults, 60 per stage and
5 s: about 210 for an hour, 500 for a week), and the store caps them too. A verdict that acts
differently from the last recorded one (a rollback after holds) is always
kept, so the moment a bound crossed its tolerance is never thinned away.

A point is stored as a compact JSON array (:func:`encode`, about 150 bytes
with one guardrail, some 50 more with each arm's latency quantiles) and served
as an object (:meth:`GatePoint.as_json`). :func:`decode` reads what the store
hands back as hostile input: anything that does not have the expected shape is
dropped, never raised. Points stored before the latency quantiles were kept
(one element shorter) still decode, without latency.

At a stage with no concurrent control (100% of its audience, gated on the plan's absolute
limits) a point keeps each limit's test too (:class:`LimitPoint`: the treated units' rate,
its always-valid bound, and what the limit allows), one more element, stored only where
the gate tested a limit: the guardrails compare nothing there, so without it such a stage
would leave no trace on a chart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from controller.core.rollouts import Rollout, Verdict
from controller.core.stats import ARM_QUANTILE_DECIMALS, ARM_QUANTILES
from controller.core.wire import ArmLatency, ArmTally, GuardrailTest, JsonObject, LimitTest

ARMS = ("treatment", "control")
ARM_COUNTS = ("units", "exposures", "requests", "errors", "conversions")
VERDICTS = ("hold", "advance", "pause", "rollback")
MAX_GUARDRAILS = 16
"""A plan has at most a handful of guardrails; more in a stored point means it is damaged."""
MAX_POINT_BYTES = 4096
LATENCY_QUANTILES = tuple(name for name, _ in ARM_QUANTILES)
"""Each arm's latency quantiles a point keeps, in this order: p50, p95, p99."""
MAX_LATENCY_MS = 3_600_000.0
"""A quantile beyond an hour is no latency the histogram can hold: a damaged value."""


@dataclass(frozen=True, slots=True)
class GuardrailPoint:
    """One guardrail's sequential test at one gate: Δ and its always-valid bound."""

    delta: float
    lower: float
    upper: float
    p_value: float
    tolerance: float
    lower_is_better: bool
    regressed: bool

    @property
    def crossed(self) -> bool:
        """The bound lies wholly beyond the tolerance on the harmful side."""
        if self.lower_is_better:
            return self.lower > self.tolerance
        return self.upper < -self.tolerance

    def as_json(self) -> JsonObject:
        return {
            "delta": _finite(self.delta),
            "lower": _finite(self.lower),
            "upper": _finite(self.upper),
            "p_value": self.p_value,
            "tolerance": self.tolerance,
            "direction": "lower_is_better" if self.lower_is_better else "higher_is_better",
            "regressed": self.regressed,
        }


class LimitPoint(BaseModel):
    """One limit's test at a gate of a stage with no concurrent control, stored and served."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    rate: float = Field(ge=0, le=1, description="The treated units' rate so far in the stage.")
    lower: float | None = Field(description="Its always-valid lower bound; null: unbounded.")
    upper: float | None = Field(description="Its always-valid upper bound; null: unbounded.")
    ceiling: float = Field(
        ge=0,
        le=1,
        description="The rate the limit allows: the error rate's limit, or the share of"
        " requests a latency limit lets be slower.",
    )
    limit: float = Field(ge=0, description="The plan's limit as declared (a share, or ms).")
    regressed: bool = Field(description="Shown above the limit: breached.")

    def stored(self) -> list[object]:
        bounds = (_short(v) if v is not None else None for v in (self.lower, self.upper))
        rate, ceiling = _short(self.rate), _short(self.ceiling)
        return [rate, *bounds, ceiling, _short(self.limit), int(self.regressed)]


MAX_LIMITS = 8
"""A plan has at most three limits on its events; more in a stored point means it is damaged."""


@dataclass(frozen=True, slots=True)
class GatePoint:
    """One recorded gate evaluation of a rollout's stage."""

    ts_ms: int
    stage: int
    percent: float
    verdict: str
    srm_p: float
    arms: dict[str, tuple[int, ...]]
    """Per arm, the counts named in :data:`ARM_COUNTS`, in that order."""
    guardrails: dict[str, GuardrailPoint | None]
    """Per metric its test, or None while the metric had too little data."""
    latency: dict[str, tuple[float | None, ...]] = field(default_factory=dict)
    """Per arm its latency quantiles in ms (:data:`LATENCY_QUANTILES`), None without
    requests; empty where the gate gave none (points stored before they were kept)."""
    limits: dict[str, LimitPoint] = field(default_factory=dict)
    """Per absolute limit its test, at a stage with no concurrent control; else empty."""

    def as_json(self) -> JsonObject:
        """The served shape: named fields, the time both in ms and ISO 8601."""
        return {
            "ts_ms": self.ts_ms,
            "ts": datetime.fromtimestamp(self.ts_ms / 1000, tz=UTC).isoformat(),
            "stage": self.stage,
            "percent": self.percent,
            "verdict": self.verdict,
            "srm_p": self.srm_p,
            "arms": {arm: dict(zip(ARM_COUNTS, c, strict=True)) for arm, c in self.arms.items()},
            "guardrails": {m: (g.as_json() if g else None) for m, g in self.guardrails.items()},
            "latency": {
                arm: dict(zip(LATENCY_QUANTILES, q, strict=True)) for arm, q in self.latency.items()
            }
            or None,
            "limits": {name: test.model_dump() for name, test in self.limits.items()} or None,
        }


def point_of(rollout: Rollout, verdict: Verdict, now: datetime) -> GatePoint:
    """The point a gate's verdict leaves for ``rollout``'s current stage."""
    evidence = verdict.evidence
    arms = evidence.arms or {}
    tests = evidence.guardrails or {}
    guardrails: dict[str, GuardrailPoint | None] = {
        g.key: _guardrail(tests.get(g.key)) for g in rollout.plan.guardrails
    }
    return GatePoint(
        ts_ms=int(now.timestamp() * 1000),
        stage=rollout.stage,
        percent=rollout.percent,
        verdict=verdict.kind.value,
        srm_p=1.0 if evidence.srm is None else float(evidence.srm.sequential_p_value),
        arms={a: _tallied(arms.get(a)) for a in ARMS},
        guardrails=guardrails,
        latency=_latency_of(evidence.latency or {}),
        limits=_limits_of(evidence.limits or {}),
    )


def _limits_of(limits: dict[str, LimitTest]) -> dict[str, LimitPoint]:
    """Each limit's test as a point keeps it."""
    return {
        name[:64]: LimitPoint(
            rate=entry.test.delta,
            lower=_bound(entry.test.lower),
            upper=_bound(entry.test.upper),
            ceiling=entry.test.tolerance,
            limit=entry.limit,
            regressed=entry.test.regressed,
        )
        for name, entry in list(limits.items())[:MAX_LIMITS]
    }


def _bound(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _tallied(tally: ArmTally | None) -> tuple[int, ...]:
    return tuple(0 if tally is None else getattr(tally, c) for c in ARM_COUNTS)


def _latency_of(latency: dict[str, ArmLatency]) -> dict[str, tuple[float | None, ...]]:
    """Each arm's quantiles from the gate's latency part; empty without it."""
    return {
        arm: tuple(_latency(getattr(latency[arm], name)) for name in LATENCY_QUANTILES)
        for arm in ARMS
        if arm in latency
    }


def _latency(value: object) -> float | None:
    number = _float(value, math.nan)
    if not 0.0 <= number <= MAX_LATENCY_MS:
        return None
    return round(number, ARM_QUANTILE_DECIMALS)


def _guardrail(test: GuardrailTest | str | None) -> GuardrailPoint | None:
    if not isinstance(test, GuardrailTest):
        return None  # "insufficient data"
    return GuardrailPoint(
        delta=float(test.delta),
        lower=float(test.lower),
        upper=float(test.upper),
        p_value=float(test.p_value),
        tolerance=float(test.tolerance),
        lower_is_better=test.direction != "higher_is_better",
        regressed=test.regressed,
    )


def due(
    last: GatePoint | None,
    point: GatePoint,
    *,
    stage_started_ms: int,
    min_interval_s: float,
    points_per_stage: int,
) -> bool:
    """Whether ``point`` is worth keeping after ``last`` (the last one kept for the flag).

    Always: the first point of a stage, or a change of verdict (a rollback
    after holds: the crossing). Otherwise once the interval since ``last`` reaches
    ``min_interval_s``, or the stage's age divided by ``points_per_stage`` if
    that is longer: points thin out as the stage ages, so the count per stage
    grows only with the logarithm of its length.
    """
    if last is None or last.stage != point.stage or last.ts_ms < stage_started_ms:
        return True
    if point.verdict != last.verdict:
        return True
    age_s = max(0.0, (point.ts_ms - stage_started_ms) / 1000)
    interval = max(min_interval_s, age_s / max(points_per_stage, 1))
    return (point.ts_ms - last.ts_ms) / 1000 >= interval


def encode(point: GatePoint) -> bytes:
    """The stored form: a JSON array, floats to 5 significant digits, infinities as null."""
    tests = {
        m: None
        if g is None
        else [
            _short(g.delta),
            _short(g.lower),
            _short(g.upper),
            _short(g.p_value),
            _short(g.tolerance),
            int(g.lower_is_better),
            int(g.regressed),
        ]
        for m, g in point.guardrails.items()
    }
    arms = [list(point.arms.get(a, (0,) * len(ARM_COUNTS))) for a in ARMS]
    row = [point.ts_ms, point.stage, point.percent, VERDICTS.index(point.verdict)]
    latency = [list(point.latency[a]) if a in point.latency else None for a in ARMS]
    stored: list[object] = [*row, _short(point.srm_p), *arms, tests, latency]
    if point.limits:  # only a stage without control tests limits: the rest stay short
        stored.append({name: test.stored() for name, test in point.limits.items()})
    return orjson.dumps(stored)


def decode(raw: bytes | str) -> GatePoint | None:
    """The point stored as ``raw``, or None when it is not one (too big, wrong shape)."""
    if len(raw) > MAX_POINT_BYTES:
        return None
    try:
        fields = orjson.loads(raw)
        if not isinstance(fields, list) or len(fields) not in (8, 9, 10):
            return None  # 8: stored before each arm's latency was kept; 10: with limits
        ts, stage, percent, verdict, srm_p, t, c, tests = fields[:8]
        latency = fields[8] if len(fields) >= 9 else None
        limits = fields[9] if len(fields) == 10 else {}
        guardrails = {
            str(m)[:64]: None if g is None else _decoded_guardrail(g)
            for m, g in list(tests.items())[:MAX_GUARDRAILS]
        }
        return GatePoint(
            ts_ms=_bounded_int(ts),
            stage=_bounded_int(stage, 1000),
            percent=min(max(float(percent), 0.0), 100.0),
            verdict=VERDICTS[int(verdict)],
            srm_p=_nullable(srm_p, 1.0),
            arms={"treatment": _counts(t), "control": _counts(c)},
            guardrails=guardrails,
            latency=_decoded_latency(latency),
            limits=_decoded_limits(limits),
        )
    except (orjson.JSONDecodeError, ValueError, TypeError, IndexError, AttributeError):
        return None


def _decoded_guardrail(g: list[Any]) -> GuardrailPoint:
    delta, lower, upper, p, tolerance, lower_is_better, regressed = g
    return GuardrailPoint(
        delta=_nullable(delta, 0.0),
        lower=_nullable(lower, -math.inf),
        upper=_nullable(upper, math.inf),
        p_value=_nullable(p, 1.0),
        tolerance=_nullable(tolerance, 0.0),
        lower_is_better=bool(lower_is_better),
        regressed=bool(regressed),
    )


def _decoded_limits(raw: Any) -> dict[str, LimitPoint]:
    if not isinstance(raw, dict) or len(raw) > MAX_LIMITS:
        raise ValueError("limits are not an object of a few")
    kept = {}
    for name, stored in raw.items():
        rate, lower, upper, ceiling, limit, regressed = stored
        kept[str(name)[:64]] = LimitPoint(
            rate=rate,
            lower=lower,  # JSON has no NaN: a number or null
            upper=upper,
            ceiling=ceiling,
            limit=limit,
            regressed=bool(regressed),
        )
    return kept


def _decoded_latency(raw: Any) -> dict[str, tuple[float | None, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, list) or len(raw) != len(ARMS):
        raise ValueError("wrong number of arms' latency")
    kept = {}
    for arm, quantiles in zip(ARMS, raw, strict=True):
        if quantiles is None:
            continue
        if not isinstance(quantiles, list) or len(quantiles) != len(LATENCY_QUANTILES):
            raise ValueError("wrong number of latency quantiles")
        kept[arm] = tuple(None if q is None else _stored_latency(q) for q in quantiles)
    return kept


def _stored_latency(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("latency is not a number")
    number = float(value)
    if not 0.0 <= number <= MAX_LATENCY_MS:
        raise ValueError(f"latency {number} out of range")
    return round(number, ARM_QUANTILE_DECIMALS)


def _counts(raw: list[Any]) -> tuple[int, ...]:
    if len(raw) != len(ARM_COUNTS):
        raise ValueError("wrong number of arm counts")
    return tuple(_bounded_int(v) for v in raw)


def _bounded_int(value: Any, limit: int = 2**53) -> int:
    number = int(value)
    if not 0 <= number <= limit:
        raise ValueError(f"{number} out of range")
    return number


def _nullable(value: Any, missing: float) -> float:
    if value is None:
        return missing
    number = float(value)
    if math.isnan(number):
        raise ValueError("NaN")
    return number


def _short(value: float) -> float | None:
    """``value`` to 5 significant digits; None for an infinity (JSON has none)."""
    if not math.isfinite(value):
        return None
    return float(f"{value:.5g}")


def _finite(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _float(value: object, missing: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return missing
    try:
        number = float(value)
    except ValueError:
        return missing
    return missing if math.isnan(number) else number


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
