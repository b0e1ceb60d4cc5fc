"""A stage never moves on while partitions holding its evidence are held or lagging.

Held: a flag's healthy events are on partition 0; its regression (treatment 30%
errors against control 2%) is on partitions 1-3, whose log start moved past the
stored offset while the daemon was down, so they are held for an operator's
choice. Partition 0 alone would advance the stage; the gate waits and says which
partitions it waits for. After ``rolloutctl ingest reread`` the held evidence is
counted and the flag is rolled back, with evidence that says it came late.

Lagging: another member of the daemon's consumer group takes some partitions and
counts nothing (an owner that stalls), so the events produced to them meanwhile
are not counted; the stage does not complete until they are, once the daemon
takes the partitions back.

Frozen: of two instances, the one that owns the regression's partition is
stopped (``SIGSTOP``) for far less than the lag bound while the stage's minimum
time ends. The gating instance's own partitions say advance, but the regression
is on the broker past the stored offset: the stage waits for the broker's log
end, naming the partition and its owner, and is rolled back once the owner
resumes and counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from controller.adapters.kafka import partition_for
from controller.adapters.redis import connect, ingest_progress
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm
from controller.settings import RedisSettings
from tests.scenarios.brokers.lost_broker import (
    FLAG,
    PARTITIONS,
    held_alerts,
    lost_broker_world,
    rolloutctl,
    stored_offsets,
)
from tests.scenarios.harness import Scenario
from tests.support.backing.services import free_port
from tests.support.controller_process import ControllerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HEALTHY_ON = 0
HARMED_ON = (1, 2, 3)
UNITS = 400
"""Units per arm on each partition."""


def plan(min_units_per_arm: int = 100) -> Plan:
    return Plan(
        stages=[
            Stage(
                percent=50,
                min_duration=timedelta(seconds=2),
                min_units_per_arm=min_units_per_arm,
            ),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[Guardrail(metric="error_rate")],
    )


@pytest.mark.timeout(300)
async def test_a_stage_waits_for_held_partitions_and_rolls_back_on_their_late_evidence(
    apache_kafka_bootstrap: str,
    redis_url: str,
    redis_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    async with lost_broker_world(
        apache_kafka_bootstrap,
        redis_url,
        redis_namespace,
        tmp_path,
        RC_INGEST__STALL_AFTER_SECONDS="600",
        RC_HTTP__PORT=str(port),
        RC_HTTP__HOST="127.0.0.1",
    ) as (world, _):
        events = world.topics["events"]
        # Given a rollout at its first stage, and every partition counted up to now
        world.start_daemon()
        await world.start(FLAG, plan())
        state = await world.until(lambda: world.state(FLAG), timeout=60, what="flag state")
        async with _producer(world) as send:
            for partition in range(PARTITIONS):
                await send(partition, [_filler(i) for i in range(5)])
        await world.until(
            lambda: _all_counted(world), timeout=60, what="every partition counted and stored"
        )
        # When, with the daemon down, the flag's healthy events go to partition 0 and its
        # regression to partitions 1-3, and those lose records past the stored offset
        world.daemon.kill()
        stored = await stored_offsets(world)
        async with _producer(world) as send:
            for partition in HARMED_ON:
                await send(partition, [_filler(i) for i in range(5)])
                await send(partition, _requests(state, partition, treatment_errors=0.3))
            await send(HEALTHY_ON, _requests(state, HEALTHY_ON, treatment_errors=0.02))
        await _delete(world.bootstrap, events, {p: (stored[p] or 0) + 5 for p in HARMED_ON})
        world.daemon.start()
        await world.until(
            lambda: len(held_alerts(world)) == len(HARMED_ON) or None,
            timeout=60,
            what="partitions 1-3 held",
        )

        # Then, once partition 0's events are counted, the gate holds naming the held
        # partitions, and the flag does not advance
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def waiting() -> dict[str, Any] | None:
                status = await _status(http)
                arms = (status or {}).get("evidence", {}).get("arms") or {}
                units = min((a or {}).get("units", 0) for a in arms.values()) if arms else 0
                if status is None or units < UNITS * 0.9:
                    return None
                return status

            status = await world.until(waiting, timeout=90, what="partition 0 counted, gated")
            assert status["verdict"] == "hold", status
            assert "evidence incomplete" in status["verdict_reason"], status
            assert status["evidence"]["incomplete"]["held"] == {events: list(HARMED_ON)}, status
            assert status["stage"] == 0, status
            assert not world.observed.decision_where(flag=FLAG, action="advance")
            rollout = await world.rollout(FLAG)
            assert rollout is not None
            assert rollout.stage == 0

            # When an operator rereads the held partitions
            code = await asyncio.to_thread(
                rolloutctl, world, tmp_path / "keys", monkeypatch, "ingest", "reread"
            )
            assert code == 0, world.daemon.log_text()[-3000:]

            # Then the flag is rolled back on the late evidence, which says it came late
            rolled = await world.until(
                lambda: world.observed.decision_where(flag=FLAG, action="rollback"),
                timeout=90,
                what=f"{FLAG} rolled back",
            )
        # decisions are published in order: an advance before the rollback would show
        assert not world.observed.decision_where(flag=FLAG, action="advance")
        late = rolled["evidence"]["late"]
        # the held partitions, and partition 0 too where a gate saw it lagging after the
        # restart (a busy machine): each was missing at a gate of this stage, then counted
        assert set(late["partitions"]) == {events}, rolled
        assert set(HARMED_ON) <= set(late["partitions"][events]) <= {HEALTHY_ON, *HARMED_ON}, rolled
        assert "counted late" in late["why"], rolled
        assert rolled["evidence"]["breach"] == "error_rate", rolled


@pytest.mark.timeout(300)
async def test_a_stage_completes_only_once_lagging_partitions_are_counted_up_to_its_horizon(
    apache_kafka_bootstrap: str, redis_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    async with lost_broker_world(
        apache_kafka_bootstrap,
        redis_url,
        redis_namespace,
        tmp_path,
        RC_ENGINE__EVIDENCE_MAX_LAG_SECONDS="4",
        RC_HTTP__PORT=str(port),
        RC_HTTP__HOST="127.0.0.1",
    ) as (world, _):
        events = world.topics["events"]
        # Given a rollout at its first stage, every partition counted through
        world.start_daemon()
        await world.start(FLAG, plan())
        state = await world.until(lambda: world.state(FLAG), timeout=60, what="flag state")
        async with _producer(world) as send:
            for partition in range(PARTITIONS):
                await send(partition, [_filler(i) for i in range(5)])
        await world.until(lambda: _all_counted(world), timeout=60, what="every partition counted")
        await world.until(
            lambda: _counted_through(world), timeout=60, what="every partition counted through"
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            # When an owner that counts nothing takes some partitions
            stalled = AIOKafkaConsumer(
                events, bootstrap_servers=world.bootstrap, group_id=f"g-{world.prefix}"
            )
            await stalled.start()
            try:
                taken = await _assigned(world, stalled)

                # Then, once their last count is past the horizon, the stage says it waits
                async def lagging() -> dict[str, Any] | None:
                    status = await _status(http)
                    wait = ((status or {}).get("evidence") or {}).get("incomplete") or {}
                    return status if (wait.get("lagging") or {}).get(events) == taken else None

                status = await world.until(lagging, timeout=60, what=f"{taken} lagging")
                assert "not yet counted" in status["verdict_reason"], status
                # And when every partition gets the flag's healthy events, the counted ones
                # are enough for the stage, but it does not complete without the others
                async with _producer(world) as send:
                    for partition in range(PARTITIONS):
                        await send(partition, _requests(state, partition, treatment_errors=0.02))
                counted_here = len(set(range(PARTITIONS)) - set(taken)) * UNITS

                async def counted_but_waiting() -> dict[str, Any] | None:
                    status = await _status(http)
                    arms = ((status or {}).get("evidence") or {}).get("arms") or {}
                    units = min((a or {}).get("units", 0) for a in arms.values()) if arms else 0
                    return status if units >= counted_here * 0.95 else None

                status = await world.until(counted_but_waiting, timeout=60, what="counted")
                assert status["verdict"] == "hold", status
                assert status["evidence"]["incomplete"]["lagging"] == {events: taken}, status
                assert not world.observed.decision_where(flag=FLAG, action="advance")
            finally:
                await stalled.stop()  # leaves the group: the daemon takes them back

        # Then the stage completes only with the lagging partitions' events counted
        advanced = await world.until(
            lambda: world.observed.decision_where(flag=FLAG, action="advance"),
            timeout=90,
            what=f"{FLAG} advanced",
        )
        arms = advanced["evidence"]["arms"]
        assert min(a["units"] for a in arms.values()) >= PARTITIONS * UNITS * 0.95, advanced
        assert "incomplete" not in advanced["evidence"], advanced


@pytest.mark.timeout(300)
async def test_a_stage_moves_under_steady_traffic_while_ingest_keeps_a_second_behind(
    apache_kafka_bootstrap: str, redis_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    # A healthy owner a moment behind the log's end is not a lagging one: with a flush at
    # most once a second, every fetch's records wait for a later flush, so a stored offset
    # never equals the last fetch's end while traffic flows, yet the stage must move.
    async with lost_broker_world(
        apache_kafka_bootstrap,
        redis_url,
        redis_namespace,
        tmp_path,
        RC_ENGINE__EVIDENCE_MAX_LAG_SECONDS=str(STEADY_MAX_LAG_S),
        RC_INGEST__FLUSH_INTERVAL_MS="1000",
    ) as (world, _):
        # Given a rollout at its first stage that needs every partition's units, every
        # partition counted through once (a smaller floor could be met, and the broker's
        # log ends pinned, while the test is still producing the later partitions' units:
        # those would rightly wait for the next stage)
        world.start_daemon()
        await world.start(FLAG, plan(min_units_per_arm=int(PARTITIONS * UNITS * 0.95)))
        state = await world.until(lambda: world.state(FLAG), timeout=60, what="flag state")
        async with _producer(world) as send:
            for partition in range(PARTITIONS):
                await send(partition, [_filler(i) for i in range(5)])
            await world.until(lambda: _all_counted(world), timeout=60, what="every one counted")
            await world.until(lambda: _counted_through(world), timeout=60, what="counted through")
            # and then events flowing to every partition for longer than the lag bound (the
            # horizon is a time: only its passing can show a partition judged lagging)
            flowing = asyncio.create_task(_steady(send))
            try:
                await asyncio.sleep(STEADY_MAX_LAG_S + 2)
                # When the flag's healthy events are sent among them
                for partition in range(PARTITIONS):
                    await send(partition, _requests(state, partition, treatment_errors=0.02))
                # Then the stage advances while the traffic goes on
                advanced = await world.until(
                    lambda: world.observed.decision_where(flag=FLAG, action="advance"),
                    timeout=90,
                    what=f"{FLAG} advanced under steady traffic",
                )
                assert not flowing.done(), "the traffic stopped before the stage moved"
            finally:
                flowing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flowing
        arms = advanced["evidence"]["arms"]
        assert min(a["units"] for a in arms.values()) >= PARTITIONS * UNITS * 0.95, advanced
        assert "incomplete" not in advanced["evidence"], advanced


STEADY_MAX_LAG_S = 4


async def _steady(send: Any) -> None:
    """Filler events to every partition, every few milliseconds, until cancelled."""
    i = 0
    while True:
        for partition in range(PARTITIONS):
            await send(partition, [_filler(i)])
            i += 1
        await asyncio.sleep(0.005)


@pytest.mark.timeout(300)
async def test_a_frozen_owner_of_the_regression_holds_the_stage_until_it_is_counted(
    apache_kafka_bootstrap: str, redis_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    async with lost_broker_world(
        apache_kafka_bootstrap,
        redis_url,
        redis_namespace,
        tmp_path,
        # a frozen member stays in the group: its partitions move to no one meanwhile
        RC_KAFKA__SESSION_TIMEOUT_MS="60000",
        RC_KAFKA__HEARTBEAT_INTERVAL_MS="1000",
        # a lag bound longer than the whole test: the owner is frozen for less than it,
        # so the time bound alone would never hold the stage (the broker's log end does)
        RC_ENGINE__EVIDENCE_MAX_LAG_SECONDS="600",
    ) as (world, _):
        events = world.topics["events"]
        # Given two instances, each owning events partitions, one gating the flag
        daemons = _two_instances(world, tmp_path)
        try:
            owned, gating = await _owners(world, daemons)
            other = next(p for p in daemons if p != gating)
            harmed_on, healthy_on = owned[other][0], owned[gating]
            frozen = daemons[other]
            owner = f"{socket.gethostname()}:{frozen.pid}"
            await world.start(FLAG, _frozen_plan())
            state = await world.until(lambda: world.state(FLAG), timeout=60, what="flag state")
            await world.until(
                lambda: _owner_recorded(world, harmed_on, owner), timeout=60, what="owner named"
            )

            # When the owner of the regression's partition is frozen, the regression and
            # healthy events are produced, and the stage's minimum time ends meanwhile
            os.killpg(frozen.pid, signal.SIGSTOP)
            async with _producer(world) as send:
                await send(harmed_on, _requests(state, harmed_on, treatment_errors=0.3))
                for partition in healthy_on:
                    await send(partition, _requests(state, partition, treatment_errors=0.02))

            # Then the gating instance holds, naming the partition, its lag and its owner
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gating}", timeout=10) as http:

                async def behind() -> dict[str, Any] | None:
                    ready = (await http.get("/readyz")).json()
                    waits = (ready.get("evidence_behind") or {}).get(FLAG) or {}
                    return waits if waits.get("behind") else None

                waits = await world.until(behind, timeout=60, what="the stage waiting")
                (lag,) = waits["behind"]
                assert (lag["topic"], lag["partition"]) == (events, harmed_on), waits
                assert lag["records"] > 0
                assert lag["owner"] == owner, waits
                status = await _status(http)
                assert status is not None
                assert status["verdict"] == "hold", status
                assert "broker's log end" in status["verdict_reason"], status
            assert not world.observed.decision_where(flag=FLAG, action="advance")
            assert not world.observed.decision_where(flag=FLAG, action="complete")

            # And once the owner resumes and counts it, the flag is rolled back
            os.killpg(frozen.pid, signal.SIGCONT)
            rolled = await world.until(
                lambda: world.observed.decision_where(flag=FLAG, action="rollback"),
                timeout=90,
                what=f"{FLAG} rolled back",
            )
            assert rolled["evidence"]["breach"] == "error_rate", rolled
            # decisions are published in order: an advance before the rollback would show
            assert not world.observed.decision_where(flag=FLAG, action="advance")
        finally:
            for daemon in daemons.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(daemon.pid, signal.SIGCONT)
                daemon.kill()


def _frozen_plan() -> Plan:
    return Plan(
        stages=[
            Stage(percent=50, min_duration=timedelta(seconds=6), min_units_per_arm=100),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[Guardrail(metric="error_rate")],
    )


async def _readiness(port: int) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(f"http://127.0.0.1:{port}/readyz")
    except httpx.TransportError as exc:  # still starting
        raise AssertionError(f"no answer on {port}: {exc!r}") from exc
    detail: dict[str, Any] = answer.json()
    return detail


def _two_instances(world: Scenario, tmp_path: Path) -> dict[int, ControllerProcess]:
    """Two instances of the controller on the world's topics, each its own HTTP port (the
    key of each), its health listener on a port of its own."""
    daemons: dict[int, ControllerProcess] = {}
    for i in range(2):
        port = free_port()
        env = {**world.daemon_env(), "RC_HTTP__PORT": str(port), "RC_HTTP__HOST": "127.0.0.1"}
        env["RC_HTTP__HEALTH_PORT"] = "0"
        daemons[port] = ControllerProcess(env=env, log_path=tmp_path / f"d{i}.log").start()
    return daemons


async def _owners(
    world: Scenario, daemons: dict[int, ControllerProcess]
) -> tuple[dict[int, list[int]], int]:
    """Each instance's events partitions once both own some, and the flag's gating one."""
    owned = await world.until(
        lambda: _split(list(daemons)), timeout=90, what="two owners of events partitions"
    )
    gating = await world.until(
        lambda: _gating(list(daemons)), timeout=60, what="the flag's gating instance"
    )
    return owned, gating


async def _split(ports: list[int]) -> dict[int, list[int]]:
    """Each instance's events partitions, once every partition is owned and both own some."""
    owned = {p: sorted((await _readiness(p)).get("events_partitions") or []) for p in ports}
    assert all(owned.values()), owned
    assert sorted(x for parts in owned.values() for x in parts) == list(range(PARTITIONS))
    return owned


async def _gating(ports: list[int]) -> int:
    """The instance that owns the flag's commands partition."""
    wanted = partition_for(FLAG, 3)
    owners = [p for p in ports if wanted in (await _readiness(p)).get("commands_partitions", [])]
    assert len(owners) == 1, owners
    return owners[0]


async def _owner_recorded(world: Scenario, partition: int, owner: str) -> bool:
    settings = RedisSettings(url=world.redis_url, key_prefix=world.prefix)
    async with connect(settings) as client:
        progress = ingest_progress(client, settings=settings, events=world.topics["events"])
        owners = await progress.owners()
    assert owners.get(world.topics["events"], {}).get(partition) == owner, owners
    return True


async def _counted_through(world: Scenario) -> bool:
    """Whether the daemon recorded every events partition as counted through."""
    settings = RedisSettings(url=world.redis_url, key_prefix=world.prefix)
    async with connect(settings) as client:
        progress = ingest_progress(client, settings=settings, events=world.topics["events"])
        through = await progress.counted_through()
    assert set(through.get(world.topics["events"], {})) == set(range(PARTITIONS)), through
    return True


async def _assigned(world: Scenario, consumer: AIOKafkaConsumer) -> list[int]:
    """The events partitions the group gave ``consumer``, once it has some."""

    async def some() -> list[int] | None:
        await consumer.getmany(timeout_ms=200)  # joins the group and keeps it
        found = sorted(tp.partition for tp in consumer.assignment())
        return found or None

    taken: list[int] = await world.until(some, timeout=60, what="partitions taken")
    return taken


async def _status(http: httpx.AsyncClient) -> dict[str, Any] | None:
    try:
        answer = await http.get(f"/rollouts/{FLAG}")
    except httpx.TransportError:  # the daemon is still starting
        return None
    if answer.status_code != 200:
        return None
    found: dict[str, Any] = answer.json()
    return found


async def _all_counted(world: Scenario) -> bool:
    stored = await stored_offsets(world)
    ends = await _ends(world.bootstrap, world.topics["events"])
    assert all(stored[p] == ends[p] for p in range(PARTITIONS)), (stored, ends)
    return True


class _producer:
    """A producer to explicit partitions, keyed by unit, stopped at the end."""

    def __init__(self, world: Scenario) -> None:
        self._world = world
        self._producer = AIOKafkaProducer(bootstrap_servers=world.bootstrap, linger_ms=5)

    async def __aenter__(self) -> Any:
        await self._producer.start()
        topic = self._world.topics["events"]

        async def send(partition: int, bodies: list[dict[str, Any]]) -> None:
            for body in bodies:
                value = orjson.dumps(body)
                key = str(body["unit"]).encode()
                await self._producer.send(topic, value=value, key=key, partition=partition)
            await self._producer.flush()

        return send

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()


def _base(flag: str, unit: str, version: int, arm: Arm, kind: str) -> dict[str, Any]:
    return {
        "v": 1,
        "ts": int(time.time() * 1000),
        "flag": flag,
        "unit": unit,
        "arm": arm.value,
        "flag_version": version,
        "type": kind,
        "id": f"{kind[0]}{uuid.uuid4().hex}",
    }


def _filler(i: int) -> dict[str, Any]:
    return _base("filler", f"f{i}", 1, Arm.CONTROL, "exposure")


def _requests(
    state: dict[str, Any], partition: int, *, treatment_errors: float
) -> list[dict[str, Any]]:
    """``UNITS`` units per arm on ``partition``, each exposed and making one request; the
    treatment's fail at ``treatment_errors``, the control's at 2%."""
    per_arm: dict[Arm, list[str]] = {Arm.TREATMENT: [], Arm.CONTROL: []}
    i = 0
    while min(len(units) for units in per_arm.values()) < UNITS:
        unit = f"p{partition}-u{i}"
        i += 1
        arm = assign(FLAG, state["salt"], unit, state["percent"])
        if len(per_arm[arm]) < UNITS:
            per_arm[arm].append(unit)
    bodies = []
    for n in range(UNITS):  # the arms interleaved, as apps send them
        for arm, units in per_arm.items():
            rate = treatment_errors if arm is Arm.TREATMENT else 0.02
            unit, failed = units[n], n < round(UNITS * rate)
            bodies.append(_base(FLAG, unit, state["version"], arm, "exposure"))
            request = _base(FLAG, unit, state["version"], arm, "request")
            bodies.append({**request, "error": failed, "latency_ms": 20.0})
    return bodies


async def _delete(bootstrap: str, topic: str, to: dict[int, int]) -> None:
    """Move each named partition's log start to its offset in ``to``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        starts = await admin.delete_records(
            {TopicPartition(topic, p): RecordsToDelete(offset) for p, offset in to.items()}
        )
    finally:
        await admin.close()
    assert {tp.partition: start for tp, start in starts.items()} == to


async def _ends(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    finally:
        await consumer.stop()
    return {tp.partition: end for tp, end in ends.items()}
