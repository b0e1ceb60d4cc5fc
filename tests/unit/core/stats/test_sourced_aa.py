"""Guardrails read from Prometheus, seeded: A/A false rollbacks within alpha, and agreement
with the event-fed gate on the very same requests.

A 10% stage of 30 minutes at 200 requests per second (``tests/support/backing/prometheus_sim.py``),
looked at every 5 s (a reading interval) and then at every 2% of growth. The
Prometheus side reads ``increase`` over the stage from scrapes a second apart, as of
the last reading (up to 5 s old), and the app's ``le`` buckets spread over the fixed
histogram.

**The expected difference** between the two gates on the same requests:

* error rate: ``increase`` extrapolates a count and its total by the same factor,
  so the rate is that of the sampled span: the Prometheus gate's Δ differs from
  the events' by what the last reading has not seen yet (≤ 6 s of traffic) and by
  the rounding of extrapolated counts; its sample size is the extrapolated total.
  At the end of a 30-minute stage the two Δ differ by under 5% of the sequential
  bound's half-width (0.8% at most in these seeds) and the sample sizes by under
  1% (0.05%).
* p95: the app's buckets are coarser than the fixed histogram; a quantile is read
  by linear interpolation inside the ``le`` bucket holding it, as Prometheus'
  ``histogram_quantile`` does, so the two p95 differ by at most a fraction of that
  bucket's width: here under 2 ms inside a 30-40 ms bucket (0.9 ms at most in
  these seeds). Both arms are read the same
  way, so the *difference* Δ is far closer still.

Verdicts agree: identical arms pass in both, a tripled error rate and a doubled p95 are
rolled back by both, in every seeded run.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.core.stats.latency import histogram_quantile
from tests.support.backing.prometheus_sim import Stream, increase, increases, look
from tests.support.simulation import Service, look_times

RUNS = 30
RATE = 200.0
PERCENT = 10.0
SECONDS = 1800
READING_S = 5.0
PLAN = Plan(stages=[Stage(percent=PERCENT), Stage(percent=100, min_units_per_arm=0)])
METRICS = ("error_rate", "latency_p95")


def streams(seed: int, treatment: Service) -> tuple[Stream, Stream, float]:
    rng = np.random.default_rng(seed)
    share = PERCENT / 100
    t = Stream.draw(rng, treatment, RATE * share, SECONDS)
    c = Stream.draw(rng, Service(), RATE * (1 - share), SECONDS)
    return t, c, float(rng.random())


def times() -> list[float]:
    return look_times(SECONDS, READING_S, 0.02)


def run(seed: int, treatment: Service, metric: str) -> tuple[bool, bool]:
    """Whether the event gate and the Prometheus gate rolled back, on one stream."""
    t, c, phase = streams(seed, treatment)
    stopped = {"events": False, "prometheus": False}
    for at in times():
        read_at = max(at - READING_S * (seed % 2), 0.0)  # half the runs read 5 s late
        if not stopped["events"]:
            result = look(PLAN, metric, (t.events(int(at)), c.events(int(at))))
            stopped["events"] = result is not None and result.regressed
        if not stopped["prometheus"]:
            arms = (t.scraped(phase, read_at, metric), c.scraped(phase, read_at, metric))
            result = look(PLAN, metric, arms)
            stopped["prometheus"] = result is not None and result.regressed
        if all(stopped.values()):
            break
    return stopped["events"], stopped["prometheus"]


def test_identical_arms_read_from_prometheus_are_rolled_back_no_more_than_alpha() -> None:
    stops: Counter[str] = Counter()
    for seed in range(RUNS):
        for metric in METRICS:
            events, prometheus = run(9_100 + seed, Service(), metric)
            stops[f"events {metric}"] += events
            stops[f"prometheus {metric}"] += prometheus
    print(f"\nA/A, {RUNS} runs of a {PERCENT:g}% stage, every look: false rollbacks {dict(stops)}")
    # alpha 0.05 per rollout and guardrail: about 1.5 of 30 at most on average
    assert all(n <= 3 for n in stops.values()), stops


@pytest.mark.parametrize(
    ("metric", "treatment"),
    [
        ("error_rate", Service().regressed("error_rate", factor=3.0)),
        ("latency_p95", Service().regressed("latency_p95")),
    ],
)
def test_both_gates_roll_back_a_regression_on_the_same_requests(
    metric: str, treatment: Service
) -> None:
    for seed in range(10):
        assert run(4_200 + seed, treatment, metric) == (True, True), seed


def test_the_two_gates_estimate_the_same_difference_within_the_stated_bounds() -> None:
    for seed in range(10):
        t, c, phase = streams(7_700 + seed, Service().regressed("error_rate", factor=1.5))
        upto = SECONDS
        events = look(PLAN, "error_rate", (t.events(upto), c.events(upto)))
        scraped = look(
            PLAN,
            "error_rate",
            (t.scraped(phase, upto, "error_rate"), c.scraped(phase, upto, "error_rate")),
        )
        assert events is not None
        assert scraped is not None
        assert abs(scraped.delta - events.delta) < 0.05 * events.half_width, seed
        assert scraped.n == pytest.approx(events.n, rel=0.01)
        # p95 of each arm: within a fraction of the le bucket (30-40 ms) that holds it
        for stream in (t, c):
            ours = histogram_quantile(stream.events(upto).latency_histogram, 0.95)
            theirs = histogram_quantile(
                stream.scraped(phase, upto, "latency_p95").latency_histogram, 0.95
            )
            assert ours is not None
            assert theirs is not None
            assert abs(theirs - ours) < 2.0, (seed, ours, theirs)


def test_a_histogram_s_increases_are_each_bucket_s_increase() -> None:
    """The simulation reads all ``le`` buckets at once: exactly as one at a time."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        times = np.sort(rng.random(int(rng.integers(0, 9))) * 10)
        values = np.cumsum(rng.integers(0, 50, (len(times), 3)), axis=0).astype(float)
        values[len(times) // 2 :, 0] -= 40  # a counter reset, in one bucket
        start = float(rng.random() * 5)
        end = start + float(rng.random() * 8)
        each = [increase(times, values[:, j], start, end) for j in range(3)]
        assert np.array_equal(increases(times, values, start, end), each, equal_nan=True)
