"""The gate history in a real Redis: capped lists that expire, one slot per flag."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from controller.adapters.redis.client import RedisClient
from controller.adapters.redis.history import MAX_MESSAGE_BYTES, RedisGateHistory
from controller.settings import HistorySettings, RedisSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_client(store_client: RedisClient) -> RedisClient:
    """The single Redis node, then the Redis Cluster (``store_client``)."""
    return store_client


def store(client: RedisClient, prefix: str, **changes: int) -> RedisGateHistory:
    history = HistorySettings(max_points_per_stage=10, decisions_kept=10, alerts_kept=3, **changes)  # type: ignore[arg-type]
    return RedisGateHistory(client, settings=RedisSettings(key_prefix=prefix), history=history)


async def test_points_are_capped_per_stage_and_expire(
    redis_client: RedisClient, redis_namespace: str
) -> None:
    history = store(redis_client, redis_namespace, ttl_seconds=3600)
    for i in range(25):
        await history.append_point("f", "r1", 0, f"p{i}".encode())
    await history.append_point("f", "r1", 2, b"late")
    stages = await history.points("f", "r1", 3)
    assert stages == [[f"p{i}".encode() for i in range(15, 25)], [], [b"late"]]
    assert await history.latest([("f", "r1", 0), ("f", "r1", 1), ("g", "r", 0)]) == [
        b"p24",
        None,
        None,
    ]
    keys = [k async for k in redis_client.scan_iter(match=f"*{redis_namespace}*")]
    assert len(keys) == 2
    assert {key_slot(k) for k in keys} == {key_slot(keys[0])}  # one flag, one slot
    ttls = [await redis_client.ttl(k) for k in keys]
    assert all(0 < ttl <= 3600 for ttl in ttls)


async def test_messages_per_flag_and_recent_alerts_across_flags(
    redis_client: RedisClient, redis_namespace: str
) -> None:
    history = store(redis_client, redis_namespace)
    await history.append_message("a", b'{"type": "decision"}', alert=False)
    for i in range(5):
        await history.append_message("b" if i % 2 else "a", f'{{"n": {i}}}'.encode(), alert=True)
    await history.append_message(None, b'{"n": "no flag"}', alert=True)
    await history.append_message("a", b"x" * (MAX_MESSAGE_BYTES + 1), alert=True)  # too big
    assert await history.messages("a") == [
        b'{"type": "decision"}',
        b'{"n": 0}',
        b'{"n": 2}',
        b'{"n": 4}',
    ]
    assert await history.recent_alerts(10) == [b'{"n": "no flag"}', b'{"n": 4}', b'{"n": 3}']
    assert await history.recent_alerts(1) == [b'{"n": "no flag"}']
