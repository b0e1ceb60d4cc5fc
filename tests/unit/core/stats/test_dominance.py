"""One unit that decides a metric is named: the bucket of units carrying most of its variance.

Each case draws both arms unit by unit (a few requests each, 2% errors, log-normal
latencies) and, in some, adds one unit to treatment that sends a large share of the arm's
requests at its own error rate and speed. The bucket holding that unit carries most of the
arm's variance on units and is named with its share of the requests; without such a unit
nothing is named.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass, replace

import pytest

from controller.core.common.histogram import BUCKET_COUNT, EDGES_MS
from controller.core.rollouts.plan import parse_plan
from controller.core.stats import (
    Heaviest,
    UnitCount,
    dominance,
    dominance_text,
    guardrail_result,
    units_waiting,
)
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.units import (
    ERRORS,
    FINE_PER_BIN,
    KIND_COUNT,
    LATENCY,
    REQUESTS,
    UNIT_BUCKETS,
    UnitBuckets,
    unit_bucket,
)

PLAN = parse_plan(
    {
        "stages": [{"percent": 50, "min_duration": "PT1H"}, {"percent": 100}],
        "guardrails": [
            {"metric": "error_rate"},
            {"metric": "latency_p95", "tolerance": 0.1, "relative": True},
            {"metric": "latency_exceedance", "edge_ms": 250.0},
        ],
    }
)


@dataclass
class _Counts:
    hist: list[int]
    slots: list[float]
    requests: int = 0
    errors: int = 0

    def unit(self, rng: random.Random, requests: int, error_rate: float, median: float) -> None:
        base = rng.randrange(UNIT_BUCKETS) * KIND_COUNT
        errors = sum(rng.random() < error_rate for _ in range(requests))
        for _ in range(requests):
            index = bisect_right(EDGES_MS, rng.lognormvariate(math.log(median), 0.5))
            self.hist[index] += 1
            self.slots[base + LATENCY + index // FINE_PER_BIN] += 1
        self.slots[base + REQUESTS] += requests
        self.slots[base + ERRORS] += errors
        self.requests += requests
        self.errors += errors


def _arm(rng: random.Random, units: int, bot: tuple[int, float, float] | None) -> ArmAggregate:
    counts = _Counts([0] * BUCKET_COUNT, [0.0] * (UNIT_BUCKETS * KIND_COUNT))
    for _ in range(units):
        counts.unit(rng, rng.randint(1, 5), 0.02, 80.0)
    if bot is not None:
        counts.unit(rng, *bot)
    return ArmAggregate(
        units=units + (bot is not None),
        requests=counts.requests,
        errors=counts.errors,
        latency_count=counts.requests,
        latency_histogram=tuple(counts.hist),
        buckets=UnitBuckets(tuple(counts.slots)),
    )


CASES = {
    # name: (the bot's requests, error rate, median ms) or None; named or not
    "no bot": (None, False),
    "a bot sending about 40% of requests, failing 20%": ((2_000, 0.20, 80.0), True),
    "a bot sending about 40%, slow": ((2_000, 0.02, 400.0), True),
    "a bot sending 2%, like everyone": ((60, 0.02, 80.0), False),
}


@pytest.mark.parametrize("metric", ["error_rate", "latency_p95", "latency_exceedance"])
@pytest.mark.parametrize("name", CASES)
def test_the_unit_that_decides_a_metric_is_named(name: str, metric: str) -> None:
    bot, named = CASES[name]
    rng = random.Random(f"{name}/{metric}")
    data = FlagAggregates("f", frozenset({1}), _arm(rng, 1_000, bot), _arm(rng, 1_000, None))
    guardrail = next(g for g in PLAN.guardrails if g.metric == metric)
    found = dominance(guardrail, data)
    if metric == "error_rate" and bot is not None and bot[1] == 0.02 and bot[2] != 80.0:
        named = False  # a slow bot that fails like everyone decides the latency, not errors
    if metric != "error_rate" and bot is not None and bot[2] == 80.0:
        named = False  # a bot as fast as everyone decides the errors, not the latency
    assert (found is not None) is named, found
    if found is not None:
        assert found.arm == "treatment"
        assert found.variance_share >= 0.5
        assert 0.3 <= found.events_share <= 0.6
        assert "one bucket of units in treatment sent" in dominance_text(found)


def test_the_evidence_and_a_waiting_guardrail_name_it() -> None:
    rng = random.Random(7)
    data = FlagAggregates(
        "f", frozenset({1}), _arm(rng, 1_000, (2_000, 0.2, 80.0)), _arm(rng, 1_000, None)
    )
    errors = PLAN.guardrails[0]
    result = guardrail_result(errors, data, PLAN)
    assert result is not None
    assert result.design_effect is not None
    assert result.design_effect > 2
    assert "most likely one unit" in units_waiting(errors, data)


def test_a_waiting_guardrail_names_the_listed_unit_in_the_bucket_or_its_hash() -> None:
    rng = random.Random(7)
    treated = _arm(rng, 1_000, (2_000, 0.2, 80.0))
    assert treated.buckets is not None
    per_bucket = [treated.buckets.totals[b * KIND_COUNT + REQUESTS] for b in range(UNIT_BUCKETS)]
    heaviest = max(range(UNIT_BUCKETS), key=per_bucket.__getitem__)
    bot = next(f"bot-{k}" for k in range(10_000) if unit_bucket(f"bot-{k}") == heaviest)
    listed = Heaviest((UnitCount(bot, 2_000, 400),))
    data = FlagAggregates(
        "f", frozenset({1}), replace(treated, heaviest=listed), _arm(rng, 1_000, None)
    )
    errors = PLAN.guardrails[0]
    said = units_waiting(errors, data)
    assert f"unit {bot} sends" in said, said
    assert "of treatment's requests" in said, said
    hashed = units_waiting(errors, data, hashed=True)
    assert bot not in hashed, hashed
    assert "unit " in hashed, hashed
