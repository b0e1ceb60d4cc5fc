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

from controller.core.reading import RolloutStatus, limit_stage_lines, metric_name, span_text
from controller.core.rollouts import Finding, Plan
from controller.core.stats import (
    FEW_UNITS,
    POWER,
    StagePreview,
    Traffic,
    limit_preview,
    plan_preview,
)
from controller.core.wire import GateEvidence
from controller.core.wire import GuardrailTest as WireTest
from controller.ctl.terminal import UsageError, env_url

DEFAULT_REQUESTS_PER_UNIT = 10.0
DEFAULT_DESIGN_EFFECT = 2.0
"""Assumed without --design-effect or --from-flag: ten requests a unit, moderately alike
(an intra-unit correlation of about 0.1); a unit of one request has a design effect of 1."""
Z_99 = 2.3263
"""z of the 99th percentile: p99 / p50 of a log-normal is e^(2.3263·sigma)."""
_PER = {"s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(?:/\s*(s|min|m|h))?\s*$")
_SHARE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(%?)\s*$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The power preview's options of ``plan validate``."""
    group = parser.add_argument_group(
        "power preview",
        "with --traffic or --from-flag, print the smallest regression each stage detects with"
        " 80% power at the end of its minimum",
    )
    group.add_argument(
        "--traffic", metavar="RATE", help="requests to the flag, all arms: 200/s, 900/min, 5e4/h"
    )
    group.add_argument(
        "--from-flag",
        metavar="FLAG",
        help="read the traffic, base rates and design effects from FLAG's rollout"
        " (the controller's HTTP API, --url)",
    )
    group.add_argument(
        "--url", metavar="URL", help="controller HTTP address for --from-flag ($ROLLOUTCTL_URL)"
    )
    group.add_argument(
        "--requests-per-unit",
        type=float,
        metavar="N",
        help=f"requests each unit sends in a stage (default {DEFAULT_REQUESTS_PER_UNIT:g})",
    )
    group.add_argument(
        "--design-effect",
        type=float,
        metavar="D",
        help="variance on units over variance as if requests were independent"
        f" (default {DEFAULT_DESIGN_EFFECT:g}, conservative; 1 for one request a unit)",
    )
    _add_unit_arguments(group)
    group.add_argument("--error-rate", metavar="SHARE", help="base error rate (default 1%%)")
    group.add_argument(
        "--conversion-rate", metavar="SHARE", help="base conversions per exposure (default 5%%)"
    )
    group.add_argument(
        "--latency", metavar="P50/P99", help="base latency in ms, median/p99 (default 100/300)"
    )
    group.add_argument(
        "--max-detectable",
        metavar="SHARE",
        help="warn about a stage that detects no regression smaller than this (100%%)",
    )
    group.add_argument(
        "--strict", action="store_true", help="a stage over --max-detectable is an error"
    )


def _add_unit_arguments(group: argparse._ArgumentGroup) -> None:
    """Units unlike the rest, which decide what a small arm holds."""
    group.add_argument(
        "--heavy-units",
        metavar="SHARE:N",
        help="a share of units that each send N requests in a stage, within"
        " --requests-per-unit (1%%:1000): a small arm's power is averaged over how many land"
        " in it",
    )
    group.add_argument(
        "--failing-units",
        metavar="SHARE:RATE",
        help="a share of units that fail RATE of their requests, within --error-rate and"
        " behind --design-effect (2%%:50%%): a regression saturates them, and a small arm's"
        " power is averaged over how many land in it",
    )


def rate(text: str) -> float:
    """``200/s``, ``900/min``, ``5e4/h`` or ``200`` (a second) as requests a second."""
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"--traffic {text!r}: give requests per second, minute or hour: 200/s")
    return float(match.group(1)) / _PER[match.group(2) or "s"]


def share(text: str, option: str) -> float:
    """``1%`` or ``0.01`` as a share."""
    match = _SHARE.match(text)
    if not match:
        raise UsageError(f"{option} {text!r}: give a share, 1% or 0.01")
    value = float(match.group(1)) / (100.0 if match.group(2) else 1.0)
    if not value > 0:
        raise UsageError(f"{option} {text!r}: must be above 0")
    return value


@dataclass
class Assumed:
    """The traffic a preview is for, and what of it was assumed rather than given."""

    traffic: Traffic
    assumed: list[str] = field(default_factory=list)

    def line(self) -> str:
        t = self.traffic
        said = (
            f"traffic {t.requests_per_s:,.4g}/s, {t.requests_per_unit:g}"
            f" request{'' if t.requests_per_unit == 1 else 's'} per unit,"
            f" design effect {t.design_effect:g}"
        )
        if t.heavy_share > 0:
            said += f", {t.heavy_share:.2%} of units sending {t.heavy_requests:,.0f} each"
        if t.failing_share > 0:
            said += f", {t.failing_share:.2%} of units failing {t.failing_rate:.0%}"
        return said + (f" ({'; '.join(self.assumed)})" if self.assumed else "")


def traffic_of(args: argparse.Namespace) -> Assumed | None:
    """The traffic the options give; None when neither --traffic nor --from-flag is."""
    if args.traffic is None and args.from_flag is None:
        return None
    given: dict[str, float] = {}
    design: dict[str, float] = {}
    assumed: list[str] = []
    if args.from_flag is not None:
        given, design = _from_flag(args)
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
        return Assumed(Traffic(**given, design_effects=design), assumed)
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


def _latency(text: str) -> dict[str, float]:
    median, _, p99 = text.partition("/")
    try:
        low, high = float(median), float(p99)
    except ValueError:
        raise UsageError(f"--latency {text!r}: give the median and p99 in ms: 100/300") from None
    if not 0 < low < high < math.inf:
        raise UsageError(f"--latency {text!r}: need 0 < median < p99")
    return {"latency_median_ms": low, "latency_sigma": math.log(high / low) / Z_99}


def _from_flag(args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float]]:
    """What FLAG's rollout shows: traffic, bases and each guardrail's design effect."""
    from controller.adapters import http_client  # noqa: PLC0415 - keep `--help` fast
    from controller.ctl.report import diagnosis  # noqa: PLC0415

    base = env_url(args.url)
    path = f"/rollouts/{args.from_flag}"
    try:
        answer = http_client.get(base + path, timeout_s=10, headers=diagnosis.token_headers())
    except http_client.Unreachable as exc:
        raise diagnosis.unreachable(base, exc) from exc
    if answer.status != 200:
        raise diagnosis.refused(base, path, answer)
    status = diagnosis.served(RolloutStatus, answer.json(), base + path, "RolloutStatus")
    given, design = flag_traffic(status)
    if "requests_per_s" not in given:
        raise UsageError(
            f"--from-flag {args.from_flag}: its rollout shows no traffic yet; give --traffic"
        )
    return given, design


def flag_traffic(status: RolloutStatus) -> tuple[dict[str, float], dict[str, float]]:
    """Traffic, bases and design effects a rollout's current stage shows (what it has)."""
    evidence = status.evidence
    arms = evidence.arms or {}
    given: dict[str, float] = {}
    requests = sum(a.requests for a in arms.values())
    units = sum(a.units for a in arms.values())
    if requests and status.time_in_stage_s > 0:
        given["requests_per_s"] = requests / status.time_in_stage_s
    if requests and units:
        given["requests_per_unit"] = max(1.0, requests / units)
    control = arms.get("control")
    if control is not None and control.requests and control.errors:
        given["error_rate"] = control.errors / control.requests
    if control is not None and control.exposures and control.conversions:
        given["conversion_rate"] = min(control.conversions, control.exposures) / control.exposures
    given.update(_flag_latency(evidence))
    design = {k: max(1.0, t.design_effect) for k, t in _tests(evidence) if t.design_effect}
    if design:
        given["design_effect"] = max(design.values())
    return given, design


def _flag_latency(evidence: GateEvidence) -> dict[str, float]:
    latency = (evidence.latency or {}).get("control")
    if latency is None or not latency.p50 or not latency.p99 or latency.p99 <= latency.p50:
        return {}
    return {
        "latency_median_ms": latency.p50,
        "latency_sigma": math.log(latency.p99 / latency.p50) / Z_99,
    }


def _tests(evidence: GateEvidence) -> list[tuple[str, WireTest]]:
    tests = evidence.guardrails or {}
    return [(key, test) for key, test in tests.items() if isinstance(test, WireTest)]


# -- the preview's text and findings -----------------------------------------------------------


def previews(plan: Plan, assumed: Assumed) -> list[StagePreview]:
    return plan_preview(plan, assumed.traffic)


def stage_line(preview: StagePreview) -> str:
    """``stage 1 (1%, 30 min): error rate detectable from +310% (80% power); ...``."""
    span = span_text(preview.seconds) + (" for its units" if preview.by_units else "")
    parts = []
    for i, found in enumerate(preview.guardrails):
        name = metric_name(found.guardrail)
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
            "assumed": assumed.assumed,
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
                    }
                    for d in p.guardrails
                },
            }
            for p in found
        ],
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
