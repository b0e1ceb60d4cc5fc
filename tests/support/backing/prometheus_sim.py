"""Seeded streams of requests read two ways: as events, and as Prometheus would.

Each second of a stage, each arm serves a Poisson number of requests that fail
with its error rate and take a latency from a log-normal body with rare
stalls (:class:`tests.support.simulation.Service`). The same requests are counted

* as the **event** pipeline does: exact counts, every latency in the fixed
  histogram, up to the instant of the look;
* as **Prometheus** does: counters and ``le`` buckets scraped once a second
  (at a random phase), read with ``increase(…[window])`` exactly as Prometheus
  computes it (:func:`increase`: the first and last samples in the window,
  counter resets corrected, extrapolated to the window's edges), as of the
  last reading, which is up to one reading interval old.

Both are tested by the same functions (:func:`guardrail_result`) so their
verdicts and estimates can be compared look by look.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from controller.core.common.histogram import EDGES_MS
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.guardrails import guardrail_result
from controller.core.stats.sequential import SequentialResult
from controller.core.stats.sourced import counted_arm, histogram_arm
from tests.support.simulation import Service

PROM_BUCKETS_MS = (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 75.0, 100.0, 250.0, 500.0, 1000.0)
"""The app's histogram buckets (``le``, in ms), +Inf beyond."""


def increase(times: np.ndarray, values: np.ndarray, start: float, end: float) -> float:
    """Prometheus' ``increase`` of a counter sampled at ``times`` over [start, end]
    (promql/functions.go, ``extrapolatedRate``); NaN with fewer than two samples."""
    inside = (times >= start) & (times <= end)
    t, v = times[inside], values[inside]
    if len(t) < 2:
        return math.nan
    drops = np.diff(v) < 0
    result = float(v[-1] - v[0] + np.sum(v[:-1][drops]))
    sampled = float(t[-1] - t[0])
    average = sampled / (len(t) - 1)
    to_start, to_end = float(t[0] - start), float(end - t[-1])
    if result > 0 and v[0] >= 0:
        to_start = min(to_start, sampled * float(v[0]) / result)
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    return result * interval / sampled


def increases(times: np.ndarray, values: np.ndarray, start: float, end: float) -> list[float]:
    """:func:`increase` of each column of ``values`` (counters sampled together at ``times``,
    each of whole counts), worked out for all of them at once: the same figures."""
    inside = (times >= start) & (times <= end)
    t, v = times[inside], values[inside]
    if len(t) < 2:
        return [math.nan] * values.shape[1]
    result = v[-1] - v[0] + np.where(np.diff(v, axis=0) < 0, v[:-1], 0.0).sum(axis=0)
    sampled = float(t[-1] - t[0])
    average = sampled / (len(t) - 1)
    to_start, to_end = float(t[0] - start), float(end - t[-1])
    grew = (result > 0) & (v[0] >= 0)
    share = sampled * v[0] / np.where(grew, result, 1.0)
    starts = np.where(grew, np.minimum(to_start, share), to_start)
    threshold = average * 1.1
    interval = np.full(len(result), sampled)
    interval += np.where(starts < threshold, starts, average / 2)
    interval += to_end if to_end < threshold else average / 2
    found: list[float] = (result * interval / sampled).tolist()
    return found


@dataclass
class Stream:
    """One arm's requests, second by second, counted both ways."""

    requests: np.ndarray
    errors: np.ndarray
    fixed: np.ndarray
    """(seconds, 118): requests per fixed histogram bucket, each second."""
    prom: np.ndarray
    """(seconds, len(PROM_BUCKETS_MS) + 1): requests per ``le`` bucket, each second."""

    @classmethod
    def draw(cls, rng: np.random.Generator, service: Service, rate: float, seconds: int) -> Stream:
        requests = rng.poisson(rate, size=seconds)
        errors = rng.binomial(requests, service.error_rate)
        total = int(requests.sum())
        stalls = rng.random(total) < service.stall_share
        body = rng.lognormal(math.log(service.latency_median_ms), service.latency_sigma, total)
        stall = rng.lognormal(math.log(service.stall_median_ms), service.stall_sigma, total)
        latency = np.where(stalls, stall, body)
        second = np.repeat(np.arange(seconds), requests)
        fixed = np.zeros((seconds, len(EDGES_MS) + 1), dtype=np.int64)
        np.add.at(fixed, (second, np.searchsorted(EDGES_MS, latency, side="right")), 1)
        prom = np.zeros((seconds, len(PROM_BUCKETS_MS) + 1), dtype=np.int64)
        np.add.at(prom, (second, np.searchsorted(PROM_BUCKETS_MS, latency, side="left")), 1)
        return cls(requests, errors, fixed, prom)

    @cached_property
    def _sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Requests, errors and the fixed histogram summed over the first s seconds, by s
        (0 to the stream's length): each look reads them, none sums them again."""
        requests, errors = (
            np.concatenate([[0], np.cumsum(c)]) for c in (self.requests, self.errors)
        )
        fixed = np.vstack([np.zeros((1, self.fixed.shape[1]), np.int64), self.fixed.cumsum(axis=0)])
        return requests, errors, fixed

    @cached_property
    def _per_le(self) -> np.ndarray:
        """Each second's ``le`` counters as scraped at its end (cumulative over time and over
        ``le``), row s after s seconds."""
        cumulative = np.vstack([np.zeros(self.prom.shape[1]), np.cumsum(self.prom, axis=0)])
        per_le: np.ndarray = np.cumsum(cumulative, axis=1)
        return per_le

    def events(self, upto: int) -> ArmAggregate:
        """What ingest has counted after ``upto`` seconds."""
        requests, errors, fixed = self._sums
        upto = len(self.requests[:upto])  # the seconds a slice up to ``upto`` holds
        n = int(requests[upto])
        return ArmAggregate(
            units=n,
            exposures=n,
            requests=n,
            errors=int(errors[upto]),
            latency_count=n,
            latency_histogram=tuple(fixed[upto].tolist()),
        )

    def scraped(
        self, phase: float, upto: float, metric: str, *, start: float = 0.0
    ) -> ArmAggregate:
        """What ``increase`` over the stage (from ``start`` seconds in) reads from the scrapes
        up to ``upto`` seconds."""
        times = np.arange(phase, upto + 1e-9, 1.0)
        if len(times) < 2:
            return ArmAggregate()
        seen = times.astype(int)  # a scrape at t sees the seconds before it
        if metric == "error_rate":
            requests, errors, _ = self._sums
            total, failed = requests[seen], errors[seen]
            return counted_arm(
                metric, increase(times, failed, start, upto), increase(times, total, start, upto)
            )
        per_le = self._per_le[seen]  # cumulative over le, per scrape
        edges = (*PROM_BUCKETS_MS, math.inf)
        return histogram_arm(list(zip(edges, increases(times, per_le, start, upto), strict=True)))


def guardrail(metric: str) -> Guardrail:
    if metric == "latency_p95":
        return Guardrail(metric="latency_p95", tolerance=0.10, relative=True)
    return Guardrail(metric="error_rate")


def look(
    plan: Plan, metric: str, arms: tuple[ArmAggregate, ArmAggregate]
) -> SequentialResult | None:
    data = FlagAggregates("sim", frozenset({1}), treatment=arms[0], control=arms[1])
    return guardrail_result(guardrail(metric), data, plan)
