"""Heavy and failing users through the real daemon: each guardrail is tested on the user.

An app on our SDK (:class:`~controller.sdk.Flags`: the Kafka flag client and the event
emitter) serves 120,000 users. 1% of them send 55% of the requests (each 120 times as many
as anyone else) and 2% fail 60% of theirs (a broken account; everyone else fails 1%). A
user's requests are not independent, so the error rate varies far more than the count of
requests says: the gate takes its variance from buckets of users, and its evidence says so
(``unit_of_analysis``, ``design_effect``, ``widening``). On identical arms the rollout
completes, and its 50% stage shows why it must be judged so: the variance on users is more
than twice the variance as if requests were independent, so an interval taken on requests
would be too narrow and would roll identical arms back more often than the plan's alpha.
Beside it runs the same traffic where the treatment's users fail three times as often
(every request, for the failing ones): it is rolled back.

Everything the app draws is seeded (who is heavy, who fails, the order of requests and
their outcomes); only the rollout's salt (which users are treated) and the timing differ
from run to run.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.wire.messages import Arm
from controller.sdk import EventEmitter, FlagClient, Flags
from controller.settings import KafkaSettings
from tests.scenarios.harness import Scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 20_180_307
USERS = 120_000
HEAVY_SHARE, HEAVY_WEIGHT = 0.01, 120
"""1% of users each send 120 times as many requests as the others: 55% of all requests."""
FAILING_SHARE, FAILING_RATE, BASE_RATE = 0.02, 0.6, 0.01
"""2% of users fail 60% of their requests (2% of the heavy ones among them); the rest 1%."""
RATE = 1_000
"""Requests a second per flag."""
REGRESSION = 3.0
"""The twin's treatment users fail this many times as often (at most every request)."""


@dataclass(frozen=True)
class Users:
    """The app's users: their ids, cumulative request weights and chance of failing."""

    ids: tuple[str, ...]
    cumulative: tuple[int, ...]
    propensity: tuple[float, ...]
    heavy: frozenset[int]
    failing: frozenset[int]


def population(seed: int) -> Users:
    """Exactly 1% heavy and 2% failing users, failing as often among the heavy as elsewhere."""
    rng = random.Random(seed)
    everyone = range(USERS)
    heavy = frozenset(rng.sample(everyone, round(USERS * HEAVY_SHARE)))
    heavy_failing = rng.sample(sorted(heavy), round(len(heavy) * FAILING_SHARE))
    others = [i for i in everyone if i not in heavy]
    light_failing = rng.sample(others, round(USERS * FAILING_SHARE) - len(heavy_failing))
    failing = frozenset(heavy_failing) | frozenset(light_failing)
    weights = (HEAVY_WEIGHT if i in heavy else 1 for i in everyone)
    return Users(
        ids=tuple(f"user-{i}" for i in everyone),
        cumulative=tuple(itertools.accumulate(weights)),
        propensity=tuple(FAILING_RATE if i in failing else BASE_RATE for i in everyone),
        heavy=heavy,
        failing=failing,
    )


def plan() -> Plan:
    """10% for 15 s, 50% for a minute, then 100%; the boundary tuned for the units it sees."""
    return Plan(
        stages=[
            Stage(percent=10, min_duration=timedelta(seconds=15), min_units_per_arm=50),
            Stage(percent=50, min_duration=timedelta(seconds=60), min_units_per_arm=50),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[Guardrail(metric="error_rate")],
        alpha=0.01,
        n_tune=20_000,  # about the users a 50% stage sees
    )


async def serve(flags: Flags, flag: str, users: Users, regression: float) -> None:
    """An app serving ``flag`` at :data:`RATE` requests a second, catching up when late.

    Each user is exposed once per flag version (as the OpenFeature provider does); each
    request fails with its user's propensity, times ``regression`` in treatment. The
    draws do not depend on the arm, so both flags see the same users and outcomes.
    """
    rng = random.Random(f"{SEED}/{flag}")
    exposed: set[tuple[int, int]] = set()
    started, drawn = time.monotonic(), 0
    while True:
        due = min(int(RATE * (time.monotonic() - started)) - drawn, RATE // 4)
        drawn += max(due, 0)
        for i in rng.choices(range(USERS), cum_weights=users.cumulative, k=max(due, 0)):
            failed = rng.random() < users.propensity[i]
            chance = rng.random()
            latency_ms = round(rng.lognormvariate(3, 0.3), 2)
            unit = users.ids[i]
            arm, version = flags.arm(flag, unit)
            if version == 0:  # not rolling out (yet, or any more): nothing to measure
                continue
            if (i, version) not in exposed:
                exposed.add((i, version))
                flags.exposure(flag, unit, arm, version)
            if arm is Arm.TREATMENT and regression != 1:
                failed = chance < min(1.0, users.propensity[i] * regression)
            flags.request(flag, unit, arm, version, error=failed, latency_ms=latency_ms)
        await asyncio.sleep(0.05)


def test_population_has_the_shape_it_claims() -> None:
    users = population(SEED)
    assert (len(users.heavy), len(users.failing)) == (1200, 2400)
    assert len(users.heavy & users.failing) == 24
    heavy_requests = len(users.heavy) * HEAVY_WEIGHT / users.cumulative[-1]
    assert 0.54 < heavy_requests < 0.56  # most requests


@pytest.mark.timeout(420)  # its own waits (up to 300 s) run out before pytest's limit
async def test_heavy_and_failing_users_complete_on_identical_arms_and_a_3x_twin_rolls_back(
    scenario: Scenario,
) -> None:
    scenario.start_daemon()
    users = population(SEED)
    kafka = KafkaSettings(bootstrap_servers=scenario.bootstrap)
    # Given an app whose heavy and failing users are the same under both flags, one with
    # identical arms and one whose treatment users fail three times as often
    async with Flags(
        FlagClient(kafka, topic=scenario.topics["flag_state"]),
        EventEmitter(kafka, topic=scenario.topics["events"], max_buffered=200_000),
    ) as flags:
        scenario.run("identical", serve(flags, "identical", users, regression=1))
        scenario.run("twin", serve(flags, "twin", users, regression=REGRESSION))
        # When both are rolled out with the same plan
        for flag in ("identical", "twin"):
            await scenario.start(flag, plan())

        def ended(flag: str) -> dict[str, Any] | None:
            seen = scenario.observed
            return seen.decision_where(flag=flag, action="complete") or seen.decision_where(
                flag=flag, action="rollback"
            )

        twin = await scenario.until(lambda: ended("twin"), timeout=300, what="the twin decided")
        identical = await scenario.until(
            lambda: ended("identical"), timeout=300, what="the identical arms decided"
        )
        await scenario.stop_apps()

    # Then the identical arms complete, every stage tested on users, not requests
    assert identical["action"] == "complete", identical["reason"]
    advances = [
        d
        for d in scenario.observed.decisions
        if d["flag"] == "identical" and d["action"] == "advance"
    ]
    assert [d["stage"] for d in advances] == [1, 2]
    tests = [d["evidence"]["guardrails"]["error_rate"] for d in advances]
    for advance, test in zip(advances, tests, strict=True):
        assert isinstance(test, dict), test
        assert (test["unit_of_analysis"], test["regressed"]) == ("unit", False), test
        assert min(test["design_effect"], test["widening"]) >= 1, test
        arms = advance["evidence"]["arms"]
        assert test["n"] <= arms["treatment"]["units"] + arms["control"]["units"], test
    # ...and at 50% the users' clustering more than doubles the variance: an interval taking
    # the requests as independent would be less than 1/1.4 as wide as it must be
    half = tests[1]
    assert half["design_effect"] > 2, half
    assert half["widening"] > 1.4, half

    # And the twin is rolled back on its error rate, tested on users
    assert twin["action"] == "rollback", twin["reason"]
    assert twin["evidence"]["breach"] == "error_rate"
    caught = twin["evidence"]["guardrails"]["error_rate"]
    assert caught["unit_of_analysis"] == "unit", caught
    # by the always-valid boundary on the way, or by the stage's final look at its end
    if twin["evidence"].get("decided_by") == "final_look":
        look = twin["evidence"]["final_look"]["tests"]["error_rate"]
        assert (look["regressed"], look["bound"] > 0) == (True, True), look
    else:
        assert (caught["regressed"], caught["lower"] > 0) == (True, True), caught
    last = [s for s in scenario.observed.flag_states if s["flag"] == "twin"][-1]
    assert (last["status"], last["percent"]) == ("rolled_back", 0)
