"""The gate's evidence as short sentences with the numbers, for the advisor to read.

Small models read "error_rate: treatment 2.1% vs control 2.0%, delta +0.1 pp"
far better than nested JSON of test statistics, and the prompt stays short
enough for a 2,048-token context. Pure; the evidence is the gate's, typed
(:class:`Briefing`): a part the gate did not write costs its sentence, never
the consultation. Only metric names (the plan's fixed enum,
with the conversion a guardrail names, which the plan's pattern bounds to
letters, digits and ``_.:-``) and numbers appear: no untrusted text is
formatted into a sentence, and no sentence holds ``<`` or ``>`` (the prompt
escapes them, which small models misread).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controller.core.rollouts.plan_parts import LOWER_IS_BETTER, metric_of
from controller.core.wire import ArmTally, GateEvidence, GuardrailTest, SrmCheck

PERCENT_METRICS = frozenset({"error_rate", "conversion_rate", "latency_exceedance"})
"""Metrics whose Δ is a difference of shares: shown in percentage points."""
MAX_SENTENCES = 30


class Briefing(BaseModel):
    """What the advisor is shown of one gate: where the rollout is, the statistics'
    verdict and its evidence. The texts (flag, plan, operator's reason) are untrusted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flag: str = ""
    plan: str = ""
    operator_reason: str = ""
    stage: int | None = None
    stages: int | None = None
    percent: float | None = None
    next_percent: float | None = None
    time_in_stage_s: int | None = None
    statistical_verdict: str | None = None
    statistical_reason: str = ""
    evidence: GateEvidence = Field(default_factory=GateEvidence)


def sentences(briefing: Briefing) -> list[str]:
    """The gate situation and its evidence, one short sentence per fact."""
    evidence = briefing.evidence
    arms, guardrails = evidence.arms or {}, evidence.guardrails or {}
    lines = [_stage_line(briefing)]
    lines += _rate_lines(arms, guardrails)
    lines += [_guardrail_line(m, r) for m, r in list(guardrails.items())[:20]]
    if evidence.srm is not None:
        lines.append(_srm_line(evidence.srm))
    return [line for line in lines if line][:MAX_SENTENCES]


def _stage_line(data: Briefing) -> str:
    stage, stages = data.stage, data.stages
    where = f"stage {stage + 1:.0f} of {stages:.0f}" if stage is not None and stages else "stage"
    percent, following = data.percent, data.next_percent
    at = f" at {percent:g}% of units" if percent is not None else ""
    then = f", next {following:g}%" if following is not None else ""
    seconds = data.time_in_stage_s
    spent = f", {seconds:.0f} s in the stage" if seconds is not None else ""
    verdict = data.statistical_verdict
    says = f"; the statistics say {verdict}" if verdict is not None else ""
    return f"{where}{at}{then}{spent}{says}."[:300]


def _rate_lines(arms: Mapping[str, ArmTally], guardrails: Mapping[str, object]) -> list[str]:
    """Per-arm error and conversion rates, gated or not: a model may see what nothing gates."""
    t, c = arms.get("treatment"), arms.get("control")
    if t is None or c is None:
        return []
    lines = [f"units: treatment {_count(t, 'units')}, control {_count(c, 'units')}."]
    for metric, part, whole in (
        ("error_rate", "errors", "requests"),
        ("conversion_rate", "conversions", "exposures"),
    ):
        rate_t, rate_c = _share(t, part, whole), _share(c, part, whole)
        if rate_t is None or rate_c is None:
            continue
        gated = "" if metric in guardrails else " (not a guardrail)"
        lines.append(
            f"{metric}: treatment {rate_t:.2%} ({_count(t, part)}/{_count(t, whole)} {whole})"
            f" vs control {rate_c:.2%} ({_count(c, part)}/{_count(c, whole)}),"
            f" delta {_signed((rate_t - rate_c) * 100)} pp{gated}."
        )
    return lines


def _guardrail_line(key: str, result: GuardrailTest | str) -> str:
    name, metric = key[:96], metric_of(key)
    if not isinstance(result, GuardrailTest):
        return f"guardrail {name}: not tested yet, too few events."
    scale, unit = (100.0, " pp") if metric in PERCENT_METRICS else (1.0, _unit(metric))
    delta, lower, upper = (parse_number(v) for v in (result.delta, result.lower, result.upper))
    tolerance = parse_number(result.tolerance) or 0.0
    if delta is None:
        return f"guardrail {name}: no estimate yet."
    bound = f"[{_bound(lower, scale)}, {_bound(upper, scale)}]{unit}"
    worse = "higher" if metric in LOWER_IS_BETTER else "lower"
    verdict = "regression shown" if result.regressed is True else "no regression shown"
    p_value = parse_number(result.p_value)
    p = f", p {p_value:.2g}" if p_value is not None else ""
    return (
        f"guardrail {name} ({worse} is worse): delta {_signed(delta * scale)}{unit},"
        f" anytime-valid bound {bound}{p}, tolerance {tolerance * scale:.3g}{unit}: {verdict}."
    )


def _srm_line(srm: SrmCheck) -> str:
    observed, expected = parse_number(srm.observed_treatment), parse_number(srm.expected_treatment)
    share = parse_number(srm.expected_treatment_share)
    p_value = parse_number(srm.sequential_p_value)
    threshold = parse_number(srm.p_threshold)
    if observed is None or expected is None or p_value is None:
        return ""
    planned = f" ({share:.1%} planned)" if share is not None else ""
    if share in (0.0, 1.0) and srm.flagged is not True:
        return f"sample ratio: not checked, the stage serves every unit one arm{planned}."
    verdict = "mismatch flagged" if srm.flagged is True else "no mismatch shown"
    limit = f", threshold {threshold:g}" if threshold is not None else ""
    return (
        f"sample ratio: {observed:.0f} treatment units against {expected:.0f} expected{planned},"
        f" sequential p {p_value:.2g}{limit}: {verdict}."
    )


def _unit(metric: str) -> str:
    return " ms" if metric.startswith("latency") else ""


def _bound(value: float | None, scale: float) -> str:
    if value is None:
        return "?"
    return "unbounded" if math.isinf(value) else _signed(value * scale)


def _signed(value: float) -> str:
    return f"{value:+.3g}"


def _share(arm: ArmTally, part: str, whole: str) -> float | None:
    numerator, denominator = parse_number(getattr(arm, part)), parse_number(getattr(arm, whole))
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _count(arm: ArmTally, key: str) -> str:
    value = parse_number(getattr(arm, key))
    return "?" if value is None else f"{value:.0f}"


def parse_number(value: Any) -> float | None:
    """A finite or infinite number from evidence or a status, else None.

    Infinities arrive as "inf" (JSON has no infinity); NaN and booleans are no numbers.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return None if math.isnan(value) else float(value)
    if value in ("inf", "-inf"):
        return float(value)
    return None
