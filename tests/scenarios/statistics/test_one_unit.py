"""One unit sends 40% of a healthy flag's requests, a fifth of them failing, at a 5% stage.

A retrying client, a crawler or a synthetic monitor with a fixed id: on the real daemon,
Apache Kafka and Redis, an app on our SDK serves 3,000 users and one such unit, which lands
in the treatment of a 5% stage. Both arms are healthy (everyone else fails 2% of their
requests, and the unit fails as often under either arm), so the rollout must not be rolled
back: the unit decides nothing (docs/architecture.md, "Each unit counted"). Status names the
unit and its share of treatment's requests. The daemon is killed with SIGKILL mid-stage and
started again; afterwards every unit's count in the store equals the app's own ledger of
what it sent: what a clean replay of the log counts. The app also records two named
exceptions, one in either arm and one in treatment alone, before and after the kill: each
fingerprint's count in each arm equals what it sent, none lost and none counted twice.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from controller.adapters.redis.aggregates import RedisAggregateStore
from controller.adapters.redis.cells.failure_counts import failure_key, failure_name
from controller.adapters.redis.cells.layout import partition_tag
from controller.adapters.redis.cells.unit_counts import FAILURES_MARK, unit_field, unit_shard
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.wire.messages import Arm
from controller.sdk import EventEmitter, FlagClient, Flags
from controller.settings import KafkaSettings, RedisSettings
from tests.scenarios.harness import Scenario, topics_on
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FLAG = "lone"
USERS = 3_000
RATE = 300
"""Requests a second."""
UNIT_SHARE, UNIT_FAILS, BASE_FAILS = 0.4, 0.2, 0.02
STAGE = timedelta(seconds=40)
BOTH, TREATED = "KeyError in checkout/cart.py:price", "TimeoutError in payments/client.py:charge"
"""The app's named exceptions: the first raised in either arm, the second in treatment alone."""
RAISES = {BOTH: (0.015, 0.015), TREATED: (0.0, 0.03)}
"""Per name, how often a request raises it: under control, under treatment."""


@dataclass
class Ledger:
    """What the app sent: per (unit, flag version, arm), its requests and failed ones."""

    requests: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    errors: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    raised: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Per (exception name, arm), the named exceptions sent, over every flag version."""


@dataclass
class World:
    scenario: Scenario
    url: str


@pytest.fixture
async def world(
    apache_kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[World]:
    prefix = f"rc-one-{uuid.uuid4().hex[:6]}"
    async with Scenario(
        bootstrap=apache_kafka_bootstrap,
        redis_url=redis_url,
        prefix=prefix,
        topics=await topics_on(apache_kafka_bootstrap, "one-unit", events=2, commands=1),
        workdir=tmp_path,
    ) as scenario:
        port = free_port()
        scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
        scenario.start_daemon()
        yield World(scenario, f"http://127.0.0.1:{port}")


def plan() -> Plan:
    return Plan(
        stages=[
            Stage(percent=5, min_duration=STAGE, min_units_per_arm=20),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[Guardrail(metric="error_rate")],
    )


async def serve(flags: Flags, unit_id: str, ledger: Ledger) -> None:
    """The app: :data:`RATE` requests a second, :data:`UNIT_SHARE` of them the one unit's."""
    rng = random.Random(7)
    exposed: set[tuple[str, int]] = set()
    started, drawn = time.monotonic(), 0
    while True:
        due = min(int(RATE * (time.monotonic() - started)) - drawn, RATE // 4)
        drawn += max(due, 0)
        for _ in range(max(due, 0)):
            lone = rng.random() < UNIT_SHARE
            unit = unit_id if lone else f"user-{rng.randrange(USERS)}"
            failed = rng.random() < (UNIT_FAILS if lone else BASE_FAILS)
            arm, version = flags.arm(FLAG, unit)
            if version == 0:
                continue
            if (unit, version) not in exposed:
                exposed.add((unit, version))
                flags.exposure(FLAG, unit, arm, version)
            flags.request(FLAG, unit, arm, version, error=failed, latency_ms=20.0)
            ledger.requests[(unit, version, arm.value)] += 1
            ledger.errors[(unit, version, arm.value)] += int(failed)
            raise_some(flags, rng, ledger, (unit, version, arm))
        await asyncio.sleep(0.05)  # the app's pace, not a wait for an outcome


def raise_some(
    flags: Flags, rng: random.Random, ledger: Ledger, served: tuple[str, int, Arm]
) -> None:
    """The request's named exceptions, at the :data:`RAISES` rates of its arm, in the ledger."""
    unit, version, arm = served
    for name, (control, treatment) in RAISES.items():
        if rng.random() < (treatment if arm is Arm.TREATMENT else control):
            example = f"{name.split()[0]}: 'cart-{rng.randrange(10**6)}'"
            kind, extra = "exception", {"failure": name, "example": example}
            if flags._emit(kind, FLAG, unit, arm, version, key=None, **extra) is not None:
                ledger.raised[(name, arm.value)] += 1


async def treated_unit(flags: Flags, scenario: Scenario) -> str:
    """An id the rollout's first stage serves the treatment: where one unit weighs most."""

    def found() -> str | None:
        for k in range(2_000):
            arm, version = flags.arm(FLAG, f"monitor-{k}")
            if version and arm is Arm.TREATMENT:
                return f"monitor-{k}"
        return None

    unit: str = await scenario.until(found, timeout=30, what="the flag served to the app")
    return unit


async def stored_counts(
    client: aioredis.Redis, prefix: str, topic: str, partitions: int, key: tuple[str, int, str]
) -> tuple[int, int]:
    """One unit's requests and failed requests in the store, over the topic's partitions."""
    unit, version, arm = key
    requests = errors = 0
    entry = unit_field(unit)
    for p in range(partitions):
        cell = f"{partition_tag(prefix, topic, p)}:k:{FLAG}:{version}:{arm}"
        level, split = (int(x or 0) for x in await client.hmget(cell, "level", "split"))
        shard = f"{cell}:{unit_shard(entry, level, split)}"
        requests += int(await client.hget(shard, entry) or 0)
        errors += int(await client.hget(shard, entry + FAILURES_MARK) or 0)
    return requests, errors


async def stored_failures(store: RedisAggregateStore, ledger: Ledger) -> Counter[tuple[str, str]]:
    """Each name's exceptions per arm as the store counts them under its fingerprint."""
    versions = {version for _, version, _ in ledger.requests}
    read = await store.read(FLAG, versions)
    got: Counter[tuple[str, str]] = Counter()
    for name in RAISES:
        fingerprint = failure_key(failure_name(name))
        for arm, aggregate in (("control", read.control), ("treatment", read.treatment)):
            if fingerprint in aggregate.failed:
                got[(name, arm)] = aggregate.failed[fingerprint].total
    return got


async def raised_counted_once(
    client: aioredis.Redis, scenario: Scenario, ledger: Ledger, before: Counter[tuple[str, str]]
) -> None:
    """Each name's exceptions in each arm, read from the store once all have come, are what
    the app sent: some of each before the kill (``before``) and some after."""
    settings = RedisSettings(url=scenario.redis_url, key_prefix=scenario.prefix)
    store = RedisAggregateStore(client, settings=settings, topic=scenario.topics["events"])
    wanted = {(BOTH, "control"), (BOTH, "treatment"), (TREATED, "treatment")}
    assert set(+before) == wanted, before
    assert all(ledger.raised[k] > before[k] for k in wanted), (before, ledger.raised)

    async def all_come() -> Counter[tuple[str, str]]:
        got = await stored_failures(store, ledger)
        assert all(got[k] >= n for k, n in ledger.raised.items()), (got, ledger.raised)
        return got

    got = await scenario.until(all_come, timeout=60, what="every named exception counted")
    assert got == +ledger.raised, (got, ledger.raised)


async def rollout_view(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{url}/rollouts/{FLAG}")
    body: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
    return body


async def test_one_unit_with_most_of_a_small_arm_decides_nothing_and_is_counted_exactly(
    world: World, redis_url: str
) -> None:
    scenario = world.scenario
    kafka = KafkaSettings(bootstrap_servers=scenario.bootstrap)
    ledger = Ledger()
    async with Flags(
        FlagClient(kafka, topic=scenario.topics["flag_state"]),
        EventEmitter(kafka, topic=scenario.topics["events"], max_buffered=200_000),
    ) as flags:
        # Given a healthy flag at 5%, and one unit in its treatment sending 40% of requests
        await scenario.start(FLAG, plan())
        unit = await treated_unit(flags, scenario)
        scenario.run("app", serve(flags, unit, ledger))
        started = time.monotonic()

        # When the daemon is killed with SIGKILL mid-stage and started again
        await scenario.until(
            lambda: ledger.requests[(unit, 1, "treatment")] > 2_000,
            timeout=60,
            what="the unit's requests flowing",
        )
        before = Counter(ledger.raised)
        scenario.daemon.kill()
        scenario.start_daemon()

        # Then status names the unit and its share of treatment's requests
        async def named() -> dict[str, Any] | None:
            view = await rollout_view(world.url)
            return view if unit in orjson.dumps(view).decode() else None

        view = await scenario.until(named, timeout=90, what=f"status naming {unit}")

        # And past the stage's end the rollout is not rolled back: it advances, or holds
        # with the unit named
        def past_stage() -> bool:
            advanced = scenario.observed.decision_where(flag=FLAG, action="advance")
            return advanced is not None or time.monotonic() - started > STAGE.total_seconds() + 20

        await scenario.until(past_stage, timeout=150, what="the stage's end gated")
        view = await rollout_view(world.url)
        await scenario.stop_apps()

    rolled = scenario.observed.decision_where(flag=FLAG, action="rollback")
    assert rolled is None, rolled["reason"] if rolled else None
    # The stage's last evidence names the unit: the advance's, or the status while it holds
    advanced = scenario.observed.decision_where(flag=FLAG, action="advance")
    last = advanced["evidence"] if advanced is not None else view
    assert unit in orjson.dumps(last).decode(), orjson.dumps(last).decode()
    shares = orjson.dumps(last).decode()
    assert '"requests_share"' in shares or '"capped"' in shares, shares

    # And every unit's count in the store is what the app sent, once
    topic, partitions = scenario.topics["events"], 2
    client = aioredis.from_url(redis_url)
    try:
        sent = sum(ledger.requests.values())

        async def all_counted() -> bool:
            got = await stored_counts(
                client, scenario.prefix, topic, partitions, (unit, 1, "treatment")
            )
            return got == (
                ledger.requests[(unit, 1, "treatment")],
                ledger.errors[(unit, 1, "treatment")],
            )

        await scenario.until(all_counted, timeout=60, what=f"all {sent:,} requests counted")
        for key, n in ledger.requests.items():
            got = await stored_counts(client, scenario.prefix, topic, partitions, key)
            assert got == (n, ledger.errors[key]), key

        # And each named exception is counted once in its arm, before the kill and after it
        await raised_counted_once(client, scenario, ledger, before)
    finally:
        await client.aclose()
