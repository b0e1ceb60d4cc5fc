"""Ingest end to end: the real daemon, a real broker, a real Redis.

Each test owns its topics, consumer group and key namespace, so tests do not
see each other's data.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.settings import RedisSettings
from tests.integration.rig import Rig, flags_of
from tests.support.controller_process import ControllerProcess
from tests.support.reference import encode, make_event
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAD_INPUT: list[tuple[bytes | None, str]] = [
    (b"{not json", "malformed_json"),
    (b"[1,2,3]", "not_an_object"),
    (orjson.dumps({"type": "click", "v": 1}), "unknown_type"),
    (orjson.dumps({"type": "exposure", "v": 7}), "unsupported_version"),
    (orjson.dumps({"type": "exposure", "v": 1, "id": "x"}), "schema_violation"),
    (b'{"pad": "' + b"x" * 70_000 + b'"}', "oversize"),
    (None, "empty"),
]


async def test_poison_messages_go_to_the_dlq_and_good_ones_count_exactly(
    rig: Rig, tmp_path: Path
) -> None:
    rng = random.Random(7)
    good = [make_event(rng, i) for i in range(3000)]
    stream: list[tuple[bytes | None, bytes | None]] = [
        (e["unit"].encode(), encode(e)) for e in good
    ]
    for index, (value, _) in enumerate(BAD_INPUT * 3):
        stream.insert(rng.randrange(len(stream)), (f"bad-{index}".encode(), value))
    with rig.daemon(tmp_path) as daemon:
        await rig.produce(stream)
        await rig.wait_counted(flags_of(good), len(good))
        letters = await rig.dead_letters(len(BAD_INPUT) * 3)
        assert daemon.running, daemon.log_text()[-2000:]
    await rig.assert_exact(good)
    by_key = {m.key: m for m in letters}
    assert len(by_key) == len(BAD_INPUT) * 3
    for index, (value, reason) in enumerate(BAD_INPUT * 3):
        letter = by_key[f"bad-{index}".encode()]
        headers = dict(letter.headers)
        assert headers["rc.reason"].decode() == reason
        assert letter.value == value
        assert headers["rc.source.topic"].decode() == rig.events
        assert int(headers["rc.source.offset"]) >= 0
        assert headers["rc.detail"]
    async with connect(RedisSettings(url=rig.redis_url)) as client:
        store = RedisAggregateStore(
            client, settings=RedisSettings(key_prefix=rig.prefix), topic=rig.events
        )
        assert await store.rejects() == {reason: 3 for _, reason in BAD_INPUT}


async def test_copies_of_events_on_the_topic_count_once_and_are_named_duplicates(
    rig: Rig, tmp_path: Path
) -> None:
    """A producer's retry and a client's re-batch put copies on the topic: each id counts once."""
    rng = random.Random(23)
    first = [make_event(rng, i, flags=3, units=40) for i in range(500)]
    new = [make_event(rng, 500 + i, flags=3, units=40) for i in range(20)]
    with rig.daemon(tmp_path) as daemon:
        await rig.produce_events(first)
        await rig.wait_counted(flags_of(first), len(first))
        # 25 acknowledged events re-batched with one new one, 20 times over; and
        # a batch holding the same event twice
        rebatched = [
            e for i, extra in enumerate(new) for e in [*first[i * 25 : i * 25 + 25], extra]
        ]
        await rig.produce_events([*rebatched, new[0], new[0]])
        everything = first + new
        await rig.settle()
        await rig.assert_exact(everything)
        assert await rig.counted(flags_of(everything)) == len(everything)
        assert daemon.terminate() == 0
    # The last progress line names every copy skipped: 20 x 25 re-batched, 2 of new[0]
    progress = [line for line in daemon.log_text().splitlines() if "ingest_progress" in line]
    assert '"duplicates": 502' in progress[-1], progress[-1]


async def test_kill_9_mid_stream_then_restart_is_exact(rig: Rig, tmp_path: Path) -> None:
    rng = random.Random(uuid.uuid4().int)
    events = [make_event(rng, i, flags=5, units=2000) for i in range(20_000)]
    daemon = rig.daemon(tmp_path).start()
    try:
        producing = asyncio.create_task(rig.produce_events(events, pace=0.01))
        target = rng.randrange(2000, 15_000)
        await rig.wait_counted(flags_of(events), target)
        daemon.kill()  # kill -9 at a random point of the stream
        await producing
        daemon.start()
        await rig.wait_counted(flags_of(events), len(events))
        await rig.settle()  # a replay after the kill, counted twice, would show now
        await rig.assert_exact(events)
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


async def test_rebalance_second_consumer_joins_and_leaves(rig: Rig, tmp_path: Path) -> None:
    rng = random.Random(uuid.uuid4().int)
    events = [make_event(rng, i, flags=4, units=3000) for i in range(16_000)]
    first = rig.daemon(tmp_path, "first").start()
    second = rig.daemon(tmp_path, "second")
    try:
        producing = asyncio.create_task(rig.produce_events(events, pace=0.02))
        await rig.wait_counted(flags_of(events), 3000)
        second.start()
        second.wait_for_log("partition_claimed", timeout=60)
        await rig.wait_counted(flags_of(events), 9000)
        assert second.terminate() == 0  # leaves the group: its partitions move back
        await producing
        await rig.wait_counted(flags_of(events), len(events), timeout=90)
        await rig.settle()  # the partitions moved twice: a replay counted twice shows now
        await rig.assert_exact(events)
        assert first.terminate() == 0
    finally:
        first.kill()
        second.kill()


async def test_three_instances_rebalancing_while_events_flow_count_exactly(
    rig: Rig, tmp_path: Path
) -> None:
    # Given events flowing to one instance
    rng = random.Random(uuid.uuid4().int)
    events = [make_event(rng, i, flags=4, units=3000) for i in range(24_000)]
    names = ("first", "second", "third")
    daemons = [rig.daemon(tmp_path, name) for name in names]
    try:
        daemons[0].start()
        producing = asyncio.create_task(rig.produce_events(events, pace=0.02))
        # When two more join the group one after the other, each taking partitions over
        for joined, (daemon, counted) in enumerate(zip(daemons[1:], (3000, 7000), strict=True)):
            await rig.wait_counted(flags_of(events), counted)
            daemon.start()
            daemon.wait_for_log("partition_claimed", timeout=60)
            assert daemons[joined].running
        # and one is killed with SIGKILL (its partitions move when its session ends)
        await rig.wait_counted(flags_of(events), 12_000)
        daemons[1].kill()
        # and another leaves the group on SIGTERM
        await rig.wait_counted(flags_of(events), 16_000)
        assert daemons[2].terminate() == 0
        await producing
        # Then the one left counts every event once
        await rig.wait_counted(flags_of(events), len(events), timeout=120)
        await rig.settle()  # a batch replayed by a new owner and counted twice shows now
        await rig.assert_exact(events)
        assert daemons[0].terminate() == 0
    finally:
        for daemon in daemons:
            daemon.kill()


async def test_redis_outage_mid_stream_loses_nothing(
    rig: Rig, tmp_path: Path, redis_server_factory: Callable[..., Any]
) -> None:
    server = redis_server_factory(persistent=True)
    outage_rig = Rig(rig.bootstrap, server.url, rig.events, rig.dlq, rig.prefix)
    rng = random.Random(uuid.uuid4().int)
    events = [make_event(rng, i) for i in range(12_000)]
    daemon = outage_rig.daemon(tmp_path).start()
    try:
        half = len(events) // 2
        await outage_rig.produce_events(events[:half])
        await outage_rig.wait_counted(flags_of(events), half)
        server.stop()
        # The second half arrives while Redis is down; the daemon tries to flush it, fails
        # and keeps retrying.
        await outage_rig.produce_events(events[half:])
        await _retries(daemon, at_least=3)
        assert daemon.running, "the daemon must survive a Redis outage"
        server.start()
        await outage_rig.wait_counted(flags_of(events), len(events), timeout=90)
        await outage_rig.settle()  # a batch flushed twice across the outage would show now
        await outage_rig.assert_exact(events)
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


async def test_sigterm_drains_and_exits_zero(rig: Rig, tmp_path: Path) -> None:
    rng = random.Random(3)
    events = [make_event(rng, i) for i in range(4000)]
    daemon = rig.daemon(tmp_path).start()
    try:
        daemon.wait_for_log("partition_claimed")
        await rig.produce_events(events)
        await rig.wait_counted(flags_of(events), 1)
        assert daemon.terminate() == 0
        log = daemon.log_text()
        assert '"draining"' in log
        assert '"stopped"' in log
        # Whatever was fetched before SIGTERM was flushed; a restart finishes the rest once.
        daemon.start()
        daemon.wait_for_log("partition_claimed")
        await rig.wait_counted(flags_of(events), len(events))
        await rig.settle()  # what the first run flushed, flushed again, would show now
        await rig.assert_exact(events)
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


async def _retries(daemon: ControllerProcess, *, at_least: int, timeout: float = 30) -> None:
    """Wait until the daemon has logged ``at_least`` failed attempts that it retries."""

    def retried() -> bool:
        seen = daemon.log_text().count('"retrying"')
        assert seen >= at_least, f"{seen} retries logged:\n{daemon.log_text()[-2500:]}"
        return True

    await eventually(retried, timeout=timeout, what=f"{at_least} retries logged")
