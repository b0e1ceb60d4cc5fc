"""Small arms through the real daemon: identical arms are never rolled back.

Several flags in one daemon, each with a 1% first stage and latency drawn
from a log-normal body with rare long stalls: a handful of treatment
requests (the 1% arm) against hundreds in control is exactly where the p95
of a few samples used to be their maximum and rolled identical arms back.
Beside them, a treatment twice as slow and one failing three times as often
must still be rolled back, each on its own guardrail.
"""

from __future__ import annotations

import math
import random
from datetime import timedelta
from functools import partial
from typing import Any

import pytest

from controller.core.reading.wording import metric_name
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.wire.messages import Arm
from tests.scenarios.harness import Scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IDENTICAL = ("aa-1", "aa-2", "aa-3", "aa-4")
RATE = 1_000  # events/s per flag: 500 requests, 5 a second in a 1% arm
BASE_ERRORS = 0.05
GUARDRAILS = [
    Guardrail(metric="error_rate"),
    Guardrail(metric="latency_p95", tolerance=0.10, relative=True),
    Guardrail(metric="latency_p99", tolerance=0.10, relative=True),
]


def plan(stage_seconds: tuple[int, int]) -> Plan:
    """1% then 5% for the given seconds, then 100%; floors low enough to bite at 1%.

    The 1% stage also waits for 100 units per arm, and the gate holds it until
    every guardrail is tested: p99's 381 requests per arm, about 80 s of a 1% arm.
    """
    first, second = stage_seconds
    return Plan(
        stages=[
            Stage(percent=1, min_duration=timedelta(seconds=first), min_units_per_arm=100),
            Stage(percent=5, min_duration=timedelta(seconds=second), min_units_per_arm=20),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=GUARDRAILS,
        min_metric_events=20,  # the quantile's own floor (73 for p95, 381 for p99) binds
        alpha=0.01,  # per rollout, split over 3 guardrails x 2 stages
    )


def jitter(_arm: Arm, rng: random.Random) -> float:
    """About 20 ms, and one request in 200 stalls for about 400 ms."""
    if rng.random() < 0.005:
        return rng.lognormvariate(math.log(400), 0.6)
    return rng.lognormvariate(math.log(20), 0.5)


def twice_as_slow(arm: Arm, rng: random.Random) -> float:
    return jitter(arm, rng) * (2 if arm is Arm.TREATMENT else 1)


def errors(factor: float) -> Any:
    def model(_state: dict[str, Any], arm: Arm) -> float:
        return BASE_ERRORS * (factor if arm is Arm.TREATMENT else 1)

    return model


@pytest.mark.timeout(420)  # its own waits (up to 240 s) run out before pytest's limit
async def test_identical_small_arms_complete_and_real_regressions_roll_back_on_their_metric(
    scenario: Scenario,
) -> None:
    scenario.start_daemon()
    # Given identical arms with jittery, stalling latency, and two real regressions
    for flag in IDENTICAL:
        scenario.run_apps(flag, rate=RATE, errors=errors(1), latency=jitter, units=100_000)
        await scenario.start(flag, plan((15, 15)))
    regressions = {"slow": "latency_p95", "faulty": "error_rate"}
    scenario.run_apps("slow", rate=RATE, errors=errors(1), latency=twice_as_slow, units=100_000)
    scenario.run_apps("faulty", rate=RATE, errors=errors(3), latency=jitter, units=100_000)
    for flag in regressions:
        await scenario.start(flag, plan((15, 120)))

    def ended(flag: str) -> dict[str, Any] | None:
        seen = scenario.observed
        return seen.decision_where(flag=flag, action="complete") or seen.decision_where(
            flag=flag, action="rollback"
        )

    def rolled_back(flag: str) -> dict[str, Any] | None:
        return scenario.observed.decision_where(flag=flag, action="rollback")

    # Then every identical flag completes: never rolled back on a few treatment requests
    for flag in IDENTICAL:
        await scenario.until(partial(ended, flag), timeout=240, what=f"{flag} decided")
    for flag in IDENTICAL:
        rolled = rolled_back(flag)
        assert rolled is None, f"{flag} rolled back: {rolled and rolled['reason']}"
        # ...and its p95 was really tested in the 1% stage, on enough requests
        first = scenario.observed.decision_where(flag=flag, action="advance", stage=1)
        assert first is not None
        p95 = first["evidence"]["guardrails"]["latency_p95"]
        assert isinstance(p95, dict), p95
        assert first["evidence"]["arms"]["treatment"]["units"] >= 100

    # And each real regression is rolled back on its own guardrail
    for flag, metric in regressions.items():
        rollback = await scenario.until(
            partial(rolled_back, flag), timeout=60, what=f"{flag} rolled back"
        )
        assert rollback["evidence"]["breach"] == metric, rollback["reason"]
        assert rollback["reason"].startswith(metric_name(metric)), rollback["reason"]
        assert "regressed" in rollback["reason"]
