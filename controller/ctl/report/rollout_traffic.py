"""The traffic a running rollout shows, for ``plan validate --from-flag``'s power preview.

Its rate, requests per unit, base rates, latency and each guardrail's design effect, read
from the rollout's current stage through the controller's HTTP API
(:mod:`controller.ctl.operate.plan_power` turns them into the preview's traffic).
"""

from __future__ import annotations

import math

from controller.core.reading import RolloutStatus
from controller.core.wire import GateEvidence
from controller.core.wire import GuardrailTest as WireTest
from controller.ctl.terminal import env_url
from controller.ctl.usage import UsageError

Z_99 = 2.3263
"""z of the 99th percentile: p99 / p50 of a log-normal is e^(2.3263·sigma)."""


def from_flag(flag: str, url: str | None) -> tuple[dict[str, float], dict[str, float]]:
    """What FLAG's rollout shows: traffic, bases and each guardrail's design effect."""
    from controller.ctl.looking import diagnosis  # noqa: PLC0415 - keep `--help` fast

    base = env_url(url)
    path = f"/rollouts/{flag}"
    answer = diagnosis.fetch(base, path, timeout_s=10)
    if answer.status != 200:
        raise diagnosis.refused(base, path, answer)
    status = diagnosis.served(RolloutStatus, answer.json(), base + path, "RolloutStatus")
    given, design = flag_traffic(status)
    if "requests_per_s" not in given:
        raise UsageError(f"--from-flag {flag}: its rollout shows no traffic yet; give --traffic")
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
