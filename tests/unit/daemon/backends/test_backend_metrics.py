"""The Unleash sync's metrics: each outcome counted, the outage gauge, the latency.

The sync runs on in-memory ports against a scripted Unleash; what is checked
is the Prometheus text the daemon would serve on ``/metrics``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.adapters.unleash.client import UnleashAdmin
from controller.core.common.errors import ControllerError
from controller.core.serving.serving import Serving, Target
from controller.core.wire.messages import CommandAction
from controller.daemon.metrics import UNANSWERED_CAUSES, WRITE_OUTCOMES, Metrics
from controller.settings import UnleashSettings
from tests.unit.daemon.backends.test_backend_sync import FLAG, World, make_world

Step = Callable[[World], Awaitable[None]]


def samples(metrics: Metrics) -> dict[tuple[str, str], float]:
    """Every ``rollout_backend_*`` sample, by name and its one label value (or "")."""
    text = metrics.exposition().decode()
    return {
        (s.name, next(iter(s.labels.values()), "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("rollout_backend_") and not s.name.endswith("_created")
    }


def writes(found: dict[tuple[str, str], float]) -> dict[str, float]:
    return {o: found[("rollout_backend_writes_total", o)] for o in WRITE_OUTCOMES}


async def start(world: World) -> None:
    await world.command(CommandAction.START, "c1")


async def resume(world: World) -> None:
    await world.command(CommandAction.RESUME, "c2")


async def sync(world: World) -> None:
    await world.sync_once([FLAG])


async def down(world: World) -> None:
    world.unleash.down = True


async def up(world: World) -> None:
    world.unleash.down = False


async def by_hand(world: World) -> None:
    world.unleash.serving = dataclasses.replace(world.unleash.serving, percent=40)


async def record_lost(world: World) -> None:
    """Unleash serves the decision but the sync's record of it is gone (a crash, a flush)."""
    world.records.records.clear()


async def refusing(world: World) -> None:
    async def refuse(target: Target) -> Serving:
        raise ControllerError("Unleash refused to read the feature: HTTP 400")

    world.unleash.read = refuse  # type: ignore[method-assign]


STEPS: dict[str, Step] = {
    f.__name__: f for f in (start, resume, sync, down, up, by_hand, record_lost, refusing)
}
CASES: list[tuple[str, str, dict[str, int], int, int]] = [
    # (case, steps, writes by outcome (others 0), drifts, unreachable at the end)
    ("written once", "start sync sync sync", {"applied": 1}, 0, 0),
    ("already served", "start sync record_lost sync", {"applied": 1, "in_place": 1}, 0, 0),
    ("unreachable: each try fails", "start down sync sync", {"failed": 2}, 0, 1),
    ("back: the decision lands", "start down sync sync up sync", {"failed": 2, "applied": 1}, 0, 0),
    ("changed by hand: held", "start sync by_hand sync sync sync", {"applied": 1, "held": 2}, 1, 0),
    ("until resumed", "start sync by_hand sync sync resume sync", {"applied": 2, "held": 1}, 1, 0),
    ("refused for good: failed, reachable", "start refusing sync sync", {"failed": 2}, 0, 0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("steps", "outcomes", "drifts", "unreachable"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
async def test_each_pass_is_counted_by_outcome(
    steps: str, outcomes: dict[str, int], drifts: int, unreachable: int
) -> None:
    metrics = Metrics()
    world = make_world(metrics.backend)
    for step in steps.split():
        await STEPS[step](world)
    found = samples(metrics)
    assert writes(found) == {o: outcomes.get(o, 0) for o in WRITE_OUTCOMES}
    assert found[("rollout_backend_drifts_total", "")] == drifts
    assert found[("rollout_backend_unreachable", "")] == unreachable
    applied = outcomes.get("applied", 0)
    assert found[("rollout_backend_apply_latency_seconds_count", "")] == applied


def test_every_series_is_exported_before_the_first_pass() -> None:
    found = samples(Metrics())
    assert writes(found) == dict.fromkeys(WRITE_OUTCOMES, 0)
    assert found[("rollout_backend_unreachable", "")] == 0
    assert found[("rollout_backend_drifts_total", "")] == 0
    for cause in UNANSWERED_CAUSES:
        assert found[("rollout_backend_unanswered_total", cause)] == 0


@pytest.mark.parametrize(
    ("after", "bucket", "below"),
    [(timedelta(seconds=0.3), "0.5", "0.25"), (timedelta(seconds=40), "60.0", "30.0")],
)
async def test_a_write_observes_the_time_since_its_decision(
    after: timedelta, bucket: str, below: str
) -> None:
    metrics = Metrics()
    world = make_world(metrics.backend, later=after)
    await start(world)
    await sync(world)
    found = samples(metrics)
    assert found[("rollout_backend_apply_latency_seconds_sum", "")] == pytest.approx(
        after.total_seconds()
    )
    assert found[("rollout_backend_apply_latency_seconds_bucket", bucket)] == 1
    assert found[("rollout_backend_apply_latency_seconds_bucket", below)] == 0


async def test_a_decision_older_than_the_clock_of_the_sync_counts_as_zero() -> None:
    metrics = Metrics()
    world = make_world(metrics.backend, later=-timedelta(seconds=5))  # skewed clocks
    await start(world)
    await sync(world)
    assert samples(metrics)[("rollout_backend_apply_latency_seconds_sum", "")] == 0


async def _hang(request: httpx.Request) -> httpx.Response:
    await asyncio.Event().wait()
    raise AssertionError("never answered")


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


@pytest.mark.parametrize(
    ("handler", "cause"),
    [
        (_hang, "deadline"),
        (
            lambda _r: httpx.Response(200, text="<html>", headers={"content-type": "text/html"}),
            "unreadable",
        ),
        (_refuse, "connection"),
        (lambda _r: httpx.Response(503), "refused"),
    ],
)
async def test_each_call_without_an_answer_is_counted_by_cause(
    handler: Callable[[httpx.Request], Any], cause: str
) -> None:
    metrics = Metrics()
    world = make_world(metrics.backend)
    await start(world)
    settings = UnleashSettings(url="http://unleash", request_timeout_seconds=0.05)
    async with UnleashAdmin(settings, transport=httpx.MockTransport(handler)) as admin:
        world.sync.flags._backend = admin
        assert await world.sync_once([FLAG]) == {FLAG}
    found = samples(metrics)
    counted = {c: found[("rollout_backend_unanswered_total", c)] for c in UNANSWERED_CAUSES}
    assert counted == {c: int(c == cause) for c in UNANSWERED_CAUSES}
    assert found[("rollout_backend_unreachable", "")] == 1
