"""What each stage of a plan can catch: ``plan validate --traffic`` and ``status``'s figure.

``rolloutctl plan validate --traffic 200/s`` (or ``--from-flag F``, the traffic, base rates
and design effects a running rollout of that flag shows) prints, for every stage with a
control arm and every guardrail, the smallest regression the stage detects with 80% power
at the end of its minimum (:mod:`controller.core.stats.power`). ``--max-detectable 100%``
makes a stage that cannot detect less a warning, and ``--strict`` an error.

``rolloutctl status FLAG`` shows the same figure for the running stage
(:mod:`controller.core.reading.stage_power`).
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Literal

from controller.core.reading import limit_stage_lines, metric_name, span_text
from controller.core.rollouts import Finding, Plan
from controller.core.stats import (
    FEW_UNITS,
    POWER,
    StagePreview,
    Traffic,
    limit_preview,
    plan_preview,
    share_text,
)
from controller.ctl.arguments import DEFAULT_DESIGN_EFFECT, DEFAULT_REQUESTS_PER_UNIT
from controller.ctl.looking import share
from controller.ctl.report import rollout_traffic
from controller.ctl.usage import UsageError

NEW_FAILURE_RATE = 0.005
"""The new failure the plan's line is for: on 0.5% of treatment's requests, none in control."""
_PER = {"s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(?:/\s*(s|min|m|h))?\s*$")


def rate(text: str) -> float:
    """``200/s``, ``900/min``, ``5e4/h`` or ``200`` (a second) as requests a second."""
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"--traffic {text!r}: give requests per second, minute or hour: 200/s")
    return float(match.group(1)) / _PER[match.group(2) or "s"]


@dataclass
class Assumed:
    """The traffic a preview is for, and what of it was assumed rather than given."""

    traffic: Traffic
    assumed: list[str] = field(default_factory=list)
    value_given: bool = False
    """--conversion-value was given; without it a plan on the conversion value is previewed
    at values of mean 1 and standard deviation 1, which the line says."""

    def notes(self, plan: Plan | None = None) -> list[str]:
        """What was assumed, for ``plan``: the values' spread only where it has a guardrail
        on the conversion value."""
        t = self.traffic
        if plan is None or self.value_given or not _on_values(plan):
            return list(self.assumed)
        return [
            *self.assumed,
            f"conversion values of mean {t.value_mean:g} and standard deviation"
            f" {t.value_cv:g} times it assumed: give --conversion-value",
        ]

    def line(self, plan: Plan | None = None) -> str:
        t = self.traffic
        assumed = self.notes(plan)
        said = (
            f"traffic {t.requests_per_s:,.4g}/s, {t.requests_per_unit:g}"
            f" request{'' if t.requests_per_unit == 1 else 's'} per unit,"
            f" design effect {t.design_effect:g}"
        )
        if t.heavy_share > 0:
            said += f", {t.heavy_share:.2%} of units sending {t.heavy_requests:,.0f} each"
        if t.failing_share > 0:
            said += f", {t.failing_share:.2%} of units failing {t.failing_rate:.0%}"
        return said + (f" ({'; '.join(assumed)})" if assumed else "")


def _on_values(plan: Plan) -> bool:
    return any(g.metric == "conversion_value" and not g.dry_run for g in plan.guardrails)


def traffic_of(args: argparse.Namespace) -> Assumed | None:
    """The traffic the options give; None when neither --traffic nor --from-flag is."""
    if args.traffic is None and args.from_flag is None:
        return None
    given: dict[str, float] = {}
    design: dict[str, float] = {}
    assumed: list[str] = []
    if args.from_flag is not None:
        given, design = rollout_traffic.from_flag(args.from_flag, args.url)
    if args.traffic is not None:
        given["requests_per_s"] = rate(args.traffic)
    _given_bases(args, given)
    if "requests_per_unit" not in given:
        given["requests_per_unit"] = DEFAULT_REQUESTS_PER_UNIT
        assumed.append(f"{DEFAULT_REQUESTS_PER_UNIT:g} requests per unit assumed")
    if "design_effect" not in given:
        given["design_effect"] = DEFAULT_DESIGN_EFFECT
        assumed.append(
            f"design effect {DEFAULT_DESIGN_EFFECT:g} assumed, a conservative default:"
            " give --design-effect or --from-flag"
        )
    try:
        traffic = Traffic(**given, design_effects=design)
        return Assumed(traffic, assumed, value_given=args.conversion_value is not None)
    except ValueError as exc:
        raise UsageError(f"power preview: {exc}") from exc


def _given_bases(args: argparse.Namespace, given: dict[str, float]) -> None:
    if args.requests_per_unit is not None:
        given["requests_per_unit"] = args.requests_per_unit
    if args.design_effect is not None:
        given["design_effect"] = args.design_effect
    if args.heavy_units is not None:
        given.update(_pair(args.heavy_units, "--heavy-units", "heavy_share", "heavy_requests"))
    if args.failing_units is not None:
        given.update(_pair(args.failing_units, "--failing-units", "failing_share", "failing_rate"))
    if args.error_rate is not None:
        given["error_rate"] = share(args.error_rate, "--error-rate")
    if args.conversion_rate is not None:
        given["conversion_rate"] = share(args.conversion_rate, "--conversion-rate")
    if args.latency is not None:
        given.update(_latency(args.latency))
    if args.conversion_value is not None:
        mean, cv = _two(args.conversion_value, "--conversion-value", "40/2.5")
        given.update(value_mean=mean, value_cv=cv)


def _pair(text: str, option: str, first: str, second: str) -> dict[str, float]:
    """``1%:1000`` (a share of units and what each sends) or ``2%:50%`` (a share of units and
    the share of requests each fails)."""
    part, _, other = text.partition(":")
    example = "1%:1000" if option == "--heavy-units" else "2%:50%"
    try:
        units, value = share(part, option), share(other, option)
    except UsageError:
        raise UsageError(
            f"{option} {text!r}: give a share of units and a value: {example}"
        ) from None
    if units >= 1.0 or not value < math.inf:
        raise UsageError(f"{option} {text!r}: the share of units must be below 100%")
    return {first: units, second: value}


def _two(text: str, option: str, example: str) -> tuple[float, float]:
    """``100/300``: two positive, finite numbers."""
    first, _, second = text.partition("/")
    try:
        pair = float(first), float(second)
    except ValueError:
        raise UsageError(f"{option} {text!r}: give two numbers: {example}") from None
    if not all(0 < v < math.inf for v in pair):
        raise UsageError(f"{option} {text!r}: both must be above 0: {example}")
    return pair


def _latency(text: str) -> dict[str, float]:
    low, high = _two(text, "--latency", "100/300 (the median and p99 in ms)")
    if not low < high:
        raise UsageError(f"--latency {text!r}: need 0 < median < p99")
    return {"latency_median_ms": low, "latency_sigma": math.log(high / low) / rollout_traffic.Z_99}


# -- the preview's text and findings -----------------------------------------------------------


def previews(plan: Plan, assumed: Assumed) -> list[StagePreview]:
    return plan_preview(plan, assumed.traffic)


def stage_line(preview: StagePreview) -> str:
    """``stage 1 (1%, 30 min): error rate detectable from +310% (80% power); ...``."""
    span = span_text(preview.seconds) + (" for its units" if preview.by_units else "")
    parts = []
    for i, found in enumerate(preview.guardrails):
        name = "a new failure" if found.new else metric_name(found.guardrail)
        if found.effect is None:
            parts.append(f"{name}: {found.text()}")
        elif i == 0 or not parts:
            parts.append(f"{name} detectable from {found.text()} ({POWER:.0%} power)")
        else:
            parts.append(f"{name} from {found.text()}")
    said = "; ".join(parts) or "no guardrail"
    if preview.smaller_arm_units < FEW_UNITS and not preview.heavy_mixed:
        said += (
            f" (about {preview.smaller_arm_units:,.0f} units in the smaller arm: optimistic"
            " where a few units send most requests; give --heavy-units)"
        )
    return f"stage {preview.index + 1} ({preview.percent:g}%, {span}): {said}"


def first_catching(found: list[StagePreview], rate: float = NEW_FAILURE_RATE) -> int | None:
    """The first stage (its index in the plan) that catches a failure new in treatment on
    ``rate`` of its requests with 80% power; None where none does."""
    return next(
        (
            preview.index
            for preview in found
            for d in preview.guardrails
            if d.new and d.effect is not None and d.effect <= rate
        ),
        None,
    )


def new_failure_lines(found: list[StagePreview], rate: float = NEW_FAILURE_RATE) -> list[str]:
    """Where the plan has ``new_failures``: the first stage that catches a new failure on
    ``rate`` of treatment's requests, or that none does."""
    if not any(d.new for preview in found for d in preview.guardrails):
        return []
    first = first_catching(found, rate)
    said = "not by this plan" if first is None else f"from stage {first + 1}"
    return [f"a new failure on {share_text(rate)} of requests: {said}"]


def limit_lines(plan: Plan, assumed: Assumed) -> list[str]:
    """Each stage without control: what its limits catch and what proof costs in time."""
    return limit_stage_lines(plan, assumed.traffic)


def max_findings(found: list[StagePreview], args: argparse.Namespace) -> list[Finding]:
    """A stage whose smallest detectable regression exceeds --max-detectable."""
    if args.max_detectable is None:
        return []
    bound = share(args.max_detectable, "--max-detectable")
    severity: Literal["error", "warning"] = "error" if args.strict else "warning"
    out = []
    for preview in found:
        worst = preview.worst()
        if worst is None or (worst.effect is not None and worst.effect <= bound):
            continue
        name = metric_name(worst.guardrail)
        said = (
            f"{name}: {worst.reason}"
            if worst.effect is None
            else f"detects no {name} regression smaller than {worst.text()}"
        )
        out.append(
            Finding(
                severity,
                f"stages[{preview.index}]",
                f"{said} at this traffic (--max-detectable {bound:.0%}): lengthen the stage"
                " or raise its percent",
            )
        )
    return out


def as_json(
    found: list[StagePreview], assumed: Assumed, plan: Plan | None = None
) -> dict[str, object]:
    t = assumed.traffic
    limited = [] if plan is None else limit_preview(plan, t)
    return {
        "traffic": {
            "requests_per_s": t.requests_per_s,
            "requests_per_unit": t.requests_per_unit,
            "design_effect": t.design_effect,
            "design_effects": dict(t.design_effects),
            "heavy_share": t.heavy_share,
            "heavy_requests": t.heavy_requests,
            "failing_share": t.failing_share,
            "failing_rate": t.failing_rate,
            "value_mean": t.value_mean,
            "value_cv": t.value_cv,
            "assumed": assumed.notes(plan),
        },
        "power": POWER,
        "stages": [
            {
                "stage": p.index,
                "percent": p.percent,
                "seconds": p.seconds,
                "guardrails": {
                    d.guardrail: {
                        "effect": d.effect,
                        "delta": d.delta,
                        "base": d.base,
                        "reason": d.reason or None,
                        "effect_is": "share_of_treatment_requests" if d.new else "relative",
                    }
                    for d in p.guardrails
                },
            }
            for p in found
        ],
        "new_failure": {"rate": NEW_FAILURE_RATE, "first_stage": first_catching(found)}
        if any(d.new for p in found for d in p.guardrails)
        else None,
        "limit_stages": [
            {
                "stage": stage.index,
                "seconds": stage.seconds,
                "requests": stage.requests,
                "require_proof": stage.require_proof,
                "limits": {figure.name: asdict(figure) for figure in stage.limits},
            }
            for stage in limited
        ],
    }
