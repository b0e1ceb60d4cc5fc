"""The stores through Redis Sentinel: ``redis+sentinel://`` finds the master and works on it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.rollouts import RolloutStore
from controller.core.stats.folding import PartitionDelta
from controller.ports import FlushOutcome, StateWrite
from controller.settings import RedisSettings
from tests.conftest import RedisServerFactory
from tests.support.backing.services import LOCALHOST, ManagedProcess, free_port
from tests.support.waiting import eventually_sync

pytestmark = pytest.mark.integration
SERVICE = "rc-main"


def _asks(port: int, command: bytes) -> bytes:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=0.5) as conn:
            conn.sendall(command)
            return conn.recv(256)
    except OSError:
        return b""


@pytest.fixture
def sentinel_url(tmp_path: Path, redis_server_factory: RedisServerFactory) -> Iterator[str]:
    """A master and one sentinel watching it (test-owned); the ``redis+sentinel://`` URL."""
    master = redis_server_factory(persistent=False)
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind {LOCALHOST}\ndir {tmp_path}\n"
        f"sentinel monitor {SERVICE} {LOCALHOST} {master.port} 1\n"
    )
    command = [master.binary, str(conf), "--sentinel"]
    process = ManagedProcess(command, tmp_path / "sentinel.log")
    try:
        ask = f"SENTINEL get-master-addr-by-name {SERVICE}\r\n".encode()
        eventually_sync(
            lambda: str(master.port).encode() in _asks(port, ask),
            timeout=20,
            what=f"the sentinel to name the master\n{process.log_tail()}",
        )
        yield f"redis+sentinel://{LOCALHOST}:{port}/{SERVICE}"
    finally:
        process.stop()


async def test_the_stores_work_on_the_master_a_sentinel_names(
    sentinel_url: str, redis_namespace: str
) -> None:
    settings = RedisSettings(url=sentinel_url, key_prefix=redis_namespace)
    async with connect(settings) as client:
        await client.ping()
        store = RedisAggregateStore(client, settings=settings, topic="events")
        claim = await store.claim(0)
        delta = PartitionDelta(partition=0, next_offset=3)
        outcome = await store.flush(delta, epoch=claim.epoch, expected_offset=None)
        assert outcome is FlushOutcome.APPLIED
        assert await store.offset(0) == 3
        states = RolloutStore(client, settings=settings)
        await states.save("f", StateWrite(rev=-1, rollout=None))
        assert await states.pending("f") == []
