"""The real Prometheus, scraping an app every second: what the gate reads of a stage.

``increase`` over the stage counts through an app restart (a counter reset): the
totals the gate reads match what the app counted, where subtracting the counter's
value at the stage's start would go negative. Templates are parsed by the server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.prometheus import PrometheusSource, check_syntax
from controller.core.machine import combined, plan_queries, planned_queries, split
from controller.core.metrics_source import Answer, cumulative_buckets, one_number
from controller.core.rollouts import parse_plan
from controller.core.rollouts.rollout import Phase, Rollout
from controller.settings import PrometheusSettings
from tests.support.backing.prometheus_kit import (
    ARMS,
    MetricsApp,
    PrometheusServer,
    error_rate,
    latency_p95,
    scraped_app,
    serve_traffic,
)
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration]
FLAG = "checkout.reset"


@pytest.fixture
async def scraped(
    prometheus_server_binary: str, tmp_path: Path
) -> AsyncIterator[tuple[MetricsApp, PrometheusServer]]:
    async with scraped_app(tmp_path / "prometheus", prometheus_server_binary) as both:
        yield both


def rollout(started: float) -> Rollout:
    plan = parse_plan(
        {
            "stages": [{"percent": 50, "min_units_per_arm": 0}, {"percent": 100}],
            "guardrails": [error_rate(), latency_p95()],
        }
    )
    at = datetime.fromtimestamp(started, UTC)
    return Rollout(
        flag=FLAG,
        rollout_id="r",
        plan=plan,
        phase=Phase.RUNNING,
        stage=0,
        stage_started_at=at,
        salt="s",
        flag_version=1,
        stage_versions={0: [1]},
        started_at=at,
        updated_at=at,
    )


async def scrapes_after(app: MetricsApp, moment: float, count: int) -> None:
    await eventually(
        lambda: sum(1 for when, _ in app.scrapes if when > moment) >= count,
        timeout=60,
        what=f"{count} scrapes",
    )


async def test_increase_over_the_stage_counts_through_a_counter_reset(
    scraped: tuple[MetricsApp, PrometheusServer],
) -> None:
    app, prometheus = scraped
    state: dict[str, Any] = {"status": "rolling_out", "salt": "s", "percent": 50.0}
    traffic = asyncio.create_task(serve_traffic(app, FLAG, lambda _f: state, rate=600))
    try:
        # Given a stage that started once the app was scraped
        await scrapes_after(app, 0, 2)
        started = time.time()
        await scrapes_after(app, started, 10)
        # When the app restarts near the stage's end: its counters start from zero
        app.restart()
        await scrapes_after(app, time.time(), 3)
        now = time.time()
    finally:
        traffic.cancel()
    at = datetime.fromtimestamp(now, UTC)
    asked = planned_queries(rollout(started), at)
    async with PrometheusSource(PrometheusSettings(url=prometheus.url)) as source:
        answers: dict[tuple[str, str, str], Answer] = {}
        for name, queries in asked.items():
            for q in queries:
                answers[name, q.arm, q.role] = await source.query(q.promql, at=at)
        raw = await source.query(
            f'sum(http_requests_total{{feature_flag_key="{FLAG}",feature_flag_variant="on"}})',
            at=at,
        )
        together = {
            name: split(await source.query(combined(queries) or "", at=at), queries)
            for name, queries in asked.items()
        }
    # Asked as one query per guardrail, the answers are the very ones asked apart
    for (name, arm, role), answer in answers.items():
        assert together[name][arm, role] == answer, (name, arm, role)
    # Then each arm's totals over the stage are what the app counted (within a scrape
    # interval at either edge), where the counter's drop would have hidden most of them
    for arm, variant in ARMS.items():
        requests, errors = app.truth_between(FLAG, variant, started, now)
        total = one_number(answers["error_rate", arm, "total"])
        assert total == pytest.approx(requests, rel=0.25), (arm, requests)
        assert one_number(answers["error_rate", arm, "count"]) == pytest.approx(errors, abs=30)
        histogram = cumulative_buckets(answers["latency_p95", arm, "buckets"], le_unit="seconds")
        assert histogram[-1][1] == pytest.approx(total, rel=0.02)
    requests_on, _ = app.truth_between(FLAG, "on", started, now)
    counter_now = one_number(raw)
    assert counter_now < 0.5 * requests_on  # now minus at-start would be negative


async def test_the_server_parses_the_plans_templates_without_running_them(
    scraped: tuple[MetricsApp, PrometheusServer],
) -> None:
    _, prometheus = scraped
    settings = PrometheusSettings(url=prometheus.url)
    plan = rollout(time.time()).plan
    for _field, promql in plan_queries(plan, "checkout.new-flow"):
        assert await asyncio.to_thread(check_syntax, settings, promql) is None
    broken = "sum(increase(http_requests_total[60s]]))"
    refused = await asyncio.to_thread(check_syntax, settings, broken)
    assert refused is not None
    assert "parse error" in refused
