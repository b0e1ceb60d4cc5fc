"""A/A through OpenTelemetry: identical arms stay under alpha across every peek of the gate.

As ``bench/aa.py`` does for our own events (``tests/support/simulation.py``), seeded rollouts
are gated at the daemon's cadence while requests arrive; here each request is what an
OpenFeature app's telemetry says of it: a SERVER span with its HTTP status and duration
and a ``feature_flag.evaluation`` event naming the variant its unit was served. The
spans go through the :class:`Translator` and the ingest's :func:`fold` into cells of
the store's shape, and the real gate (:func:`evaluate`, error rate and p99 guardrails
with their sequential tests) looks at them as the stage runs. Both arms are the same
service, so every rollback or pause is a false one: at most ``alpha`` of the runs.

This is a simulation of the path below Kafka (translation, folding, gating), not the
whole daemon: the path above it (decoding, ingest, the flush) is proved exact by the
integration tests, so the counts the gate reads here are the counts it would read.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import pytest

from controller.core.machine.gate import evaluate
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.rollouts.rollout import VerdictKind
from controller.core.stats import ArmAggregate, FlagAggregates, fold
from controller.core.stats.aggregates import CellDelta, CellKey
from controller.core.telemetry import FlagRules, Span, SpanEvent, Spans, Translator
from tests.support.simulation import T0, _rollout, look_times

pytestmark = pytest.mark.slow
FLAG = "aa-otlp"
RUNS = 40
RATE = 40.0
"""Requests a second."""
PLAN = Plan(
    stages=[
        Stage(percent=10, min_duration=timedelta(minutes=2), min_units_per_arm=50),
        Stage(percent=25, min_duration=timedelta(minutes=2), min_units_per_arm=50),
        Stage(percent=50, min_duration=timedelta(minutes=4), min_units_per_arm=50),
        Stage(percent=100),
    ],
    guardrails=[
        Guardrail(metric="error_rate"),
        Guardrail(metric="latency_p99", tolerance=0.10, relative=True),
    ],
)


def requests(rng: random.Random, n: int, percent: float, at_ns: int) -> Spans:
    """``n`` requests of one service, each unit served treatment with ``percent`` chance."""
    spans = []
    for _ in range(n):
        variant = "treatment" if rng.random() * 100 < percent else "control"
        error = rng.random() < 0.02
        stall = rng.random() < 0.005
        latency_ms = rng.lognormvariate(5.99 if stall else 3.0, 0.6 if stall else 0.5)
        trace, span = rng.getrandbits(128), rng.getrandbits(64) | 1
        evaluation = {
            "feature_flag.key": FLAG,
            "feature_flag.result.variant": variant,
            "feature_flag.context.id": f"u{rng.getrandbits(48):x}",
        }
        spans.append(
            Span(
                trace_id=f"{trace:032x}",
                span_id=f"{span:016x}",
                parent_span_id="",
                name="GET /checkout",
                kind=2,
                start_ns=at_ns,
                end_ns=at_ns + int(latency_ms * 1e6),
                status_code=2 if error else 0,
                attributes={"http.response.status_code": 500 if error else 200},
                events=(SpanEvent("feature_flag.evaluation", at_ns + 1000, evaluation),),
                resource={"service.name": "shop"},
            )
        )
    return Spans(spans)


class Stored:
    """One arm's store fields and units, each look's cell added to them as the flush adds
    it (rather than every look's data counted again from the stage's start)."""

    def __init__(self, version: int, name: str) -> None:
        self.key: CellKey = (FLAG, version, name)
        self.fields: Counter[str] = Counter()
        self.floats: dict[str, float] = {}
        self.units: set[str] = set()

    def add(self, cells: dict[CellKey, CellDelta]) -> None:
        cell = cells.get(self.key)
        if cell is None:
            return
        self.fields.update(cell.counters())
        for name, value in cell.floats().items():
            self.floats[name] = self.floats.get(name, 0.0) + value
        self.units |= cell.units

    def aggregate(self) -> ArmAggregate:
        return ArmAggregate.from_fields({**self.fields, **self.floats}, units=len(self.units))


def one_run(seed: int) -> str | None:
    """What stopped one rollout (the breached guardrail, ``srm``, or ``stuck`` when a stage
    never advanced), or None: it completed."""
    rng = random.Random(seed)
    rules: dict[str, FlagRules] = {}
    translator = Translator(rules.get)
    elapsed = 0.0
    for index, stage in enumerate(PLAN.stages):
        if stage.percent >= 100:
            return None
        version = index + 1
        rules[FLAG] = FlagRules(flag=FLAG, version=version)
        arms = (Stored(version, "treatment"), Stored(version, "control"))
        started, last = T0 + timedelta(seconds=elapsed), 0.0
        # Looks go on past the minimum time, as the daemon's do: a p99 tested on units needs
        # a few more requests than one taken as independent when the units' design effect is
        # estimated above 1.
        for t in look_times(stage.min_duration.total_seconds() * 1.5, 0.25, 0.05):
            at = started + timedelta(seconds=t)
            at_ns = int(at.timestamp() * 1e9)
            batch = requests(rng, _poisson(rng, RATE * (t - last)), stage.percent, at_ns)
            cells: dict[CellKey, CellDelta] = {}
            fold(translator.spans(batch, at_ns // 1_000_000).events, cells)
            for stored in arms:
                stored.add(cells)
            last = t
            data = FlagAggregates(
                FLAG, frozenset({version}), arms[0].aggregate(), arms[1].aggregate()
            )
            verdict = evaluate(_rollout(PLAN, index, started), data, at)
            if verdict.kind in (VerdictKind.ROLLBACK, VerdictKind.PAUSE):
                return verdict.evidence.breach or "srm"
            if verdict.kind is VerdictKind.ADVANCE:
                break
        else:
            return "stuck"
        elapsed += last
    return None


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (Knuth's method: means here are a few dozen at most)."""
    if mean <= 0:
        return 0
    limit, count, product = pow(2.718281828459045, -mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def test_identical_arms_through_otlp_are_rolled_back_at_most_alpha_of_the_time() -> None:
    stopped = [one_run(seed) for seed in range(RUNS)]
    # The gate judged the translated data: no stage waited for data it never got.
    assert "stuck" not in stopped
    false = [s for s in stopped if s is not None]
    assert len(false) <= PLAN.alpha * RUNS, false
