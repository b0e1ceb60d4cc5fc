"""A test's own events topic, DLQ, key namespace and daemon environment."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.client import RedisClient
from controller.settings import RedisSettings
from tests.support.controller_process import ControllerProcess, controller_env
from tests.support.reference import assert_arm_equal, encode, expected_arm, reference_fold
from tests.support.waiting import eventually

# A flag of the rig's own: its events mark how far the daemon has read each partition.
MARKER_FLAG = "rig-marker"


class Rig:
    """One test's topics, namespace and daemon environment."""

    def __init__(self, bootstrap: str, redis_url: str, events: str, dlq: str, prefix: str) -> None:
        self.bootstrap, self.redis_url = bootstrap, redis_url
        self.events, self.dlq, self.prefix = events, dlq, prefix
        self.env = controller_env(
            bootstrap=bootstrap,
            redis_url=redis_url,
            prefix=prefix,
            events=events,
            dlq=dlq,
        )
        self._daemons: list[ControllerProcess] = []

    def daemon(self, tmp_path: Path, name: str = "controller") -> ControllerProcess:
        """A daemon on the rig's topics; its log is shown when a wait times out."""
        process = ControllerProcess(env=self.env, log_path=tmp_path / f"{name}.log")
        self._daemons.append(process)
        return process

    async def produce(
        self,
        values: list[tuple[bytes | None, bytes | None]],
        *,
        max_request_size: int = 1_048_576,
    ) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=10, max_request_size=max_request_size
        )
        await producer.start()
        try:
            for key, value in values:
                await producer.send(self.events, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()

    async def produce_events(self, events: list[dict[str, Any]], *, pace: float = 0) -> None:
        chunk = 200
        for start in range(0, len(events), chunk):
            part = events[start : start + chunk]
            await self.produce([(e["unit"].encode(), encode(e)) for e in part])
            if pace:
                await asyncio.sleep(pace)

    async def counted(self, flag_names: set[str]) -> int:
        """Events counted so far (exposures + requests + conversions + exceptions, each
        crash among them) over all flags."""
        async with connect(RedisSettings(url=self.redis_url)) as client:
            store = RedisAggregateStore(
                client, settings=RedisSettings(key_prefix=self.prefix), topic=self.events
            )
            total = 0
            for flag in flag_names:
                agg = await store.read(flag, {1, 2, 3})
                for arm in (agg.treatment, agg.control):
                    total += arm.exposures + arm.requests + arm.conversions + arm.exceptions
            return total

    async def wait_counted(
        self, flags: set[str], n: int, *, timeout: float = 60, what: str = ""
    ) -> int:
        """Wait until at least ``n`` events of ``flags`` are counted; the count then.

        Raises AssertionError on timeout with what was counted, what was
        expected and the tail of each daemon's log.
        """

        async def counted() -> int:
            got = await self.counted(flags)
            assert got >= n, self._short(got, n)
            return got

        context = f" ({what})" if what else ""
        return await eventually(counted, timeout=timeout, what=f"{n} events counted{context}")

    def _short(self, got: int, n: int) -> str:
        logs = "".join(f"\n{d.log_path.name} tail:\n{d.log_text()[-2500:]}" for d in self._daemons)
        return f"{got} of {n} events counted{logs}"

    async def settle(self, timeout: float = 60) -> None:
        """Wait until the daemon has processed everything produced so far.

        One marker event goes to every partition; a partition is read in order,
        so once each marker is counted, whatever came before it (a replay, a
        double count) is counted too. A positive signal, where a pause would guess.
        """
        before = await self.counted({MARKER_FLAG})
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            partitions = sorted(await producer.partitions_for(self.events))
            for partition in partitions:
                marker = _marker(partition)
                await producer.send_and_wait(
                    self.events,
                    key=marker["unit"].encode(),
                    value=encode(marker),
                    partition=partition,
                )
        finally:
            await producer.stop()
        await self.wait_counted(
            {MARKER_FLAG}, before + len(partitions), timeout=timeout, what="the markers"
        )

    async def assert_exact(self, events: list[dict[str, Any]]) -> None:
        cells = reference_fold(events)
        async with connect(RedisSettings(url=self.redis_url)) as client:
            store = RedisAggregateStore(
                client, settings=RedisSettings(key_prefix=self.prefix), topic=self.events
            )
            for flag in {e["flag"] for e in events}:
                got = await store.read(flag, {1, 2, 3})
                for arm, agg in (("treatment", got.treatment), ("control", got.control)):
                    want, _ = expected_arm(cells, flag, {1, 2, 3}, arm)
                    assert_arm_equal(agg, want, where=f"{flag}.{arm}")

    async def dead_letters(self, expected: int, timeout: float = 20) -> list[Any]:
        consumer = AIOKafkaConsumer(
            self.dlq, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        found: list[Any] = []
        try:

            async def read() -> bool:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    found.extend(records)
                assert len(found) >= expected, f"{len(found)} dead letters of {expected}"
                return True

            if expected:
                await eventually(read, timeout=timeout, what=f"{expected} dead letters")
        finally:
            await consumer.stop()
        return found

    async def every_dead_letter(self) -> list[Any]:
        """Every dead letter on the DLQ now (call it after a positive signal that what could
        be dead-lettered was: an export's answer, a partition flushed)."""
        return await every_record(self.bootstrap, self.dlq)


async def every_record(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` (one partition) up to the end offset the broker names now."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[Any] = []
    try:
        partition = TopicPartition(topic, 0)
        end = (await consumer.end_offsets([partition]))[partition]
        while len(found) < end:
            batch = await consumer.getmany(partition, timeout_ms=500)
            found.extend(batch.get(partition, []))
    finally:
        await consumer.stop()
    return found


def flags_of(events: list[dict[str, Any]]) -> set[str]:
    return {e["flag"] for e in events}


def _marker(partition: int) -> dict[str, Any]:
    return {
        "type": "exposure",
        "v": 1,
        "id": f"marker-{uuid.uuid4().hex}",
        "ts": int(time.time() * 1000),
        "flag": MARKER_FLAG,
        "unit": f"marker-{partition}",
        "arm": "control",
        "flag_version": 1,
    }


async def drop_keys(client: RedisClient, prefix: str) -> None:
    """Delete a test's keys (its namespace ``prefix``), one by one: on a cluster, keys of
    several slots."""
    keys = [k async for k in client.scan_iter(match=f"*{prefix}*")]
    for key in keys:
        await client.delete(key)
