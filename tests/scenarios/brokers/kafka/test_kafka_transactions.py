"""A rollout fed by a transactional producer on Apache Kafka moves on when its stage ends.

Apps that write with exactly-once semantics (Kafka Streams, Flink's exactly-once sink,
Connect, any producer with a ``transactional.id``) end every transaction with a marker
that takes an offset no consumer is handed. Here one such producer (librdkafka) writes a
rollout's first-stage evidence in transactions over every events partition, commits most
and aborts some, each aborted one carrying a regression (every treatment request fails)
that would roll the flag back were it counted, and stops: partitions 0 and 1 end with a
commit marker, partitions 2 and 3 with an abort marker, and the log is quiet before the
stage's minimum time ends. The stage advances within one gate interval of that end, on
exactly the committed records' counts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm
from tests.integration.ingest.logs.test_transactions import log_ends
from tests.scenarios.brokers.lost_broker import FLAG, PARTITIONS, lost_broker_world, stored_offsets

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GATE_INTERVAL_S = 1.0
MIN_DURATION = timedelta(seconds=20)
"""The first stage's minimum time: long enough to write and count every transaction."""
UNITS = 240
"""Committed units per arm on each partition."""
CHUNKS = 6
"""Committed transactions, each with a share of every partition's units."""
Body = dict[str, Any]


def plan() -> Plan:
    return Plan(
        stages=[
            Stage(percent=50, min_duration=MIN_DURATION, min_units_per_arm=100),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[Guardrail(metric="error_rate")],
    )


def _event(state: Body, unit: str, arm: Arm, kind: str, **more: Any) -> Body:
    return {
        "v": 1,
        "ts": int(time.time() * 1000),
        "flag": FLAG,
        "unit": unit,
        "arm": arm.value,
        "flag_version": state["version"],
        "type": kind,
        "id": f"{kind[0]}{uuid.uuid4().hex}",
        **more,
    }


def _units(state: Body, prefix: str, per_arm: int) -> list[tuple[str, Arm]]:
    """``per_arm`` units of each arm, as the flag's split assigns them, arms interleaved."""
    arms: dict[Arm, list[str]] = {Arm.TREATMENT: [], Arm.CONTROL: []}
    i = 0
    while min(len(units) for units in arms.values()) < per_arm:
        unit, i = f"{prefix}-u{i}", i + 1
        arm = assign(FLAG, state["salt"], unit, state["percent"])
        if len(arms[arm]) < per_arm:
            arms[arm].append(unit)
    return [(arms[arm][n], arm) for n in range(per_arm) for arm in arms]


def healthy(state: Body, partition: int) -> list[Body]:
    """Each unit exposed and making one request; 2% of each arm's fail."""
    bodies = []
    for n, (unit, arm) in enumerate(_units(state, f"p{partition}", UNITS)):
        failed = n // 2 < round(UNITS * 0.02)
        bodies.append(_event(state, unit, arm, "exposure"))
        bodies.append(_event(state, unit, arm, "request", error=failed, latency_ms=20.0))
    return bodies


def harmful(state: Body, partition: int, tag: str) -> list[Body]:
    """A regression no count may see: every treatment request fails."""
    bodies = []
    for unit, arm in _units(state, f"aborted-{tag}-p{partition}", 20):
        bodies.append(_event(state, unit, arm, "exposure"))
        failed = arm is Arm.TREATMENT
        bodies.append(_event(state, unit, arm, "request", error=failed, latency_ms=20.0))
    return bodies


Transaction = tuple[dict[int, list[Body]], bool]
"""Each partition's events in one transaction, and whether it commits (else it aborts)."""


def transactions_of(state: Body) -> tuple[list[Transaction], list[Body]]:
    """Committed transactions over every partition with an aborted one after each, the last
    (aborted) on partitions 2 and 3 alone; and the committed events."""
    every = {p: healthy(state, p) for p in range(PARTITIONS)}
    share = -(-len(every[0]) // CHUNKS)
    plan: list[Transaction] = []
    for n in range(CHUNKS):
        plan.append(({p: bodies[n * share : (n + 1) * share] for p, bodies in every.items()}, True))
        aborted = {p: harmful(state, p, str(n)) for p in range(PARTITIONS) if n % 2 == 0}
        plan.append((aborted or {n % PARTITIONS: harmful(state, n % PARTITIONS, str(n))}, False))
    plan.append(({p: harmful(state, p, "last") for p in (2, 3)}, False))
    return plan, [body for bodies in every.values() for body in bodies]


def produce(bootstrap: str, topic: str, plan: list[Transaction]) -> None:
    """Write ``plan`` with one transactional producer, one transaction after another; an
    aborted one's records reach the log before its abort marker."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"checkout-app-{uuid.uuid4().hex[:8]}",
            "linger.ms": 5,
        }
    )
    producer.init_transactions(30)
    for by_partition, commits in plan:
        producer.begin_transaction()
        for partition, bodies in by_partition.items():
            for body in bodies:
                value, key = orjson.dumps(body), body["unit"].encode()
                producer.produce(topic, value, key=key, partition=partition)
        if commits:
            producer.commit_transaction(30)
        else:
            assert producer.flush(30) == 0
            producer.abort_transaction(30)


def tally(events: list[Body]) -> dict[str, dict[str, int]]:
    """Per arm, the exposures, requests and errors of ``events``."""
    counts: dict[str, Counter[str]] = {arm.value: Counter() for arm in Arm}
    for body in events:
        kind = "exposures" if body["type"] == "exposure" else "requests"
        counts[body["arm"]][kind] += 1
        counts[body["arm"]]["errors"] += bool(body.get("error"))
    return {arm: dict(c) for arm, c in counts.items()}


def at(ts: str | int) -> datetime:
    """A message's ``ts`` (RFC 3339, or epoch milliseconds) as a time."""
    return (
        datetime.fromisoformat(ts) if isinstance(ts, str) else datetime.fromtimestamp(ts / 1e3, UTC)
    )


@pytest.mark.timeout(300)
async def test_a_stage_fed_by_a_transactional_producer_advances_when_it_ends_on_a_quiet_log(
    apache_kafka_bootstrap: str, redis_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    async with lost_broker_world(
        apache_kafka_bootstrap,
        redis_url,
        redis_namespace,
        tmp_path,
        RC_ENGINE__GATE_INTERVAL_SECONDS=str(GATE_INTERVAL_S),
    ) as (world, _):
        events = world.topics["events"]
        # Given a rollout at its first stage
        world.start_daemon()
        await world.start(FLAG, plan())
        state = await world.until(lambda: world.state(FLAG), timeout=60, what="flag state")
        rollout = await world.rollout(FLAG)
        assert rollout is not None
        stage_end = rollout.stage_started_at + MIN_DURATION

        # When an app writes its evidence in transactions, commits most, aborts some,
        # and then writes nothing more: two partitions end with a commit marker, two
        # with an abort marker
        written, committed = transactions_of(state)
        await asyncio.to_thread(produce, world.bootstrap, events, written)
        ends = await log_ends(world.bootstrap, events, PARTITIONS)

        # Then every partition is counted up to the broker's log end, markers and all,
        # before the stage's minimum time ends
        async def counted_to_the_end() -> bool:
            stored = await stored_offsets(world)
            assert stored == ends, f"stored {stored}, log ends {ends}"
            return True

        await world.until(counted_to_the_end, timeout=60, what="every log counted to its end")
        counted_at = datetime.now(stage_end.tzinfo)
        assert counted_at < stage_end, f"counted at {counted_at}, after the stage's end"

        # And the stage advances within one gate interval of its end
        advanced = await world.until(
            lambda: world.observed.decision_where(flag=FLAG, action="advance"),
            timeout=MIN_DURATION.total_seconds() + 60,
            what=f"{FLAG} advanced",
        )
        late = (at(advanced["ts"]) - stage_end).total_seconds()
        assert 0 <= late <= GATE_INTERVAL_S, f"advanced {late:.3f} s after the stage's end"
        # on exactly the committed records' counts: no aborted one among them
        arms = advanced["evidence"]["arms"]
        got = {arm: {k: arms[arm][k] for k in ("exposures", "requests", "errors")} for arm in arms}
        assert got == tally(committed), advanced["evidence"]
        assert "incomplete" not in advanced["evidence"], advanced["evidence"]
        assert not world.observed.decision_where(flag=FLAG, action="rollback")
        spare = (stage_end - counted_at).total_seconds()
        print(
            f"counted to the log ends {spare:.1f} s before the stage's end;"
            f" advanced {late:.3f} s after it"
        )
