"""One bad message never takes ingest down: the real daemon, broker and Redis.

A message at the broker's size limit cannot be copied to the DLQ byte for
byte (its headers would push it over), so its letter is cut, and says so.
The crash-loop guard mixes every kind of poison into valid traffic and kills
the daemon with SIGKILL at a random point: after a restart every valid event
is counted exactly once and every poison is in the DLQ with its reason.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from tests.integration.http.test_http import wait_status, wait_unready
from tests.integration.rig import Rig, flags_of
from tests.support.backing.services import free_port
from tests.support.reference import encode, make_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NEAR_LIMIT = 1_048_400


async def test_a_message_at_the_size_limit_is_dead_lettered_cut_and_ingest_goes_on(
    rig: Rig, tmp_path: Path
) -> None:
    rng = random.Random(3)
    before = [make_event(rng, i) for i in range(500)]
    after = [make_event(rng, 500 + i) for i in range(500)]
    huge = b'{"pad": "' + b"x" * (NEAR_LIMIT - 11) + b'"}'
    with rig.daemon(tmp_path) as daemon:
        await rig.produce_events(before)
        await rig.produce([(b"huge", huge)], max_request_size=4 * 1024 * 1024)
        await rig.produce_events(after)
        counted = await rig.wait_counted(flags_of(before + after), 1000)
        letters = await rig.dead_letters(1)
        assert daemon.running, daemon.log_text()[-3000:]
    assert counted == 1000
    await rig.assert_exact(before + after)
    assert len(letters) == 1
    headers = dict(letters[0].headers)
    assert headers["rc.reason"] == b"oversize"
    assert headers["rc.truncated"] == b"true"
    assert headers["rc.original.bytes"] == str(len(huge)).encode()
    assert headers["rc.original.sha256"] == hashlib.sha256(huge).hexdigest().encode()
    assert huge.startswith(letters[0].value)
    assert 0 < len(letters[0].value) < len(huge)


def _poisons() -> list[tuple[bytes, str | None]]:
    """Poison values with their DLQ reason (None: any reason, as long as it is dead-lettered)."""
    valid: dict[str, Any] = {
        "type": "conversion",
        "v": 1,
        "id": "p",
        "ts": 1_763_780_000_000,
        "flag": "flag-0",
        "unit": "u1",
        "arm": "control",
        "flag_version": 1,
    }
    good = orjson.dumps(valid)
    return [
        (good.replace(b'"u1"', b'"u\xff\xfe1"'), None),
        (b'{"a":' * 1000 + b"1" + b"}" * 1000, None),
        (b"[" * 10_000 + b"]" * 10_000, None),
        (orjson.dumps({**valid, "value": 1e200}), "schema_violation"),
        (
            orjson.dumps({**valid, "type": "request", "error": False, "latency_ms": 1.7e308}),
            "schema_violation",
        ),
        (orjson.dumps({**valid, "flag": "trail\n"}), "schema_violation"),
        (b'{"pad": "' + b"x" * 70_000 + b'"}', "oversize"),
        (b"", "empty"),
    ]


async def test_poison_between_valid_events_survives_a_kill_at_a_random_point(
    rig: Rig, tmp_path: Path
) -> None:
    rng = random.Random()
    seed = rng.randrange(1_000_000)
    rng.seed(seed)
    good = [make_event(rng, i) for i in range(6000)]
    stream: list[tuple[bytes | None, bytes | None]] = [
        (e["unit"].encode(), encode(e)) for e in good
    ]
    poisons = _poisons() * 3
    for index, (value, _) in enumerate(poisons):
        stream.insert(rng.randrange(len(stream)), (f"poison-{index}".encode(), value))
    kill_after = rng.randrange(300, 5000)

    daemon = rig.daemon(tmp_path)
    with daemon:
        await rig.produce(stream)
        reached = await rig.wait_counted(flags_of(good), kill_after, what=f"seed {seed}")
        daemon.kill()
        daemon.start()
        counted = await rig.wait_counted(flags_of(good), len(good), what=f"seed {seed}")
        letters = await rig.dead_letters(len(poisons))
        assert daemon.running, f"seed {seed}: {daemon.log_text()[-3000:]}"
    assert counted == len(good), f"seed {seed}, killed after {reached}"
    await rig.assert_exact(good)
    by_key = {m.key: dict(m.headers)["rc.reason"].decode() for m in letters}
    for index, (value, reason) in enumerate(poisons):
        key = f"poison-{index}".encode()
        assert key in by_key, f"seed {seed}: poison {index} ({value[:40]!r}) not dead-lettered"
        assert reason is None or by_key[key] == reason, (index, by_key[key])


async def test_readyz_tells_when_ingest_or_the_gate_loop_is_stalled(
    rig: Rig, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    port = free_port()
    rig.env.update(
        {
            "RC_HTTP__PORT": str(port),
            "RC_INGEST__STALL_AFTER_SECONDS": "1.5",
            "RC_ENGINE__STALL_AFTER_SECONDS": "1.5",
        }
    )
    readyz = f"http://127.0.0.1:{port}/readyz"
    rng = random.Random(9)
    first = [make_event(rng, i) for i in range(400)]
    second = [make_event(rng, 400 + i) for i in range(400)]
    dirty = [f"{{{rig.prefix}:{rig.events}:{p}}}:dirty" for p in range(4)]
    with rig.daemon(tmp_path) as daemon:
        await rig.produce_events(first)
        assert await rig.wait_counted(flags_of(first), 400) == 400
        await wait_status(readyz, 200)
        # A partition-wide key Redis would refuse holds every batch: ingest stalls.
        for key in dirty:
            await redis_client.delete(key)
            await redis_client.rpush(key, "x")
        await rig.produce_events(second)
        await wait_unready(readyz, "ingest stalled")
        for key in dirty:
            await redis_client.delete(key)
        assert await rig.wait_counted(flags_of(first), 800) == 800
        await wait_status(readyz, 200)
        # A damaged set of rollouts makes every gate pass fail: the gate loop stalls.
        await redis_client.set(f"{rig.prefix}:rollouts", "not a set")
        await wait_unready(readyz, "gate loop stalled")
        await redis_client.delete(f"{rig.prefix}:rollouts")
        await wait_status(readyz, 200)
        assert daemon.running, daemon.log_text()[-3000:]
    await rig.assert_exact(first + second)
