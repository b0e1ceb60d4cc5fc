"""SIGTERM while the control group rebalances and a drain waits on a peer's lease.

Two instances act on one flag for a moment during a rebalance, and one drain
of a flag's outbox runs at a time across them (a lease in Redis). A daemon
asked to stop while it waits for a peer's lease must stop within its grace
period and leave the messages for whoever drains next, not wait the lease out.
The peer here is this test, holding the flag's lease in the real Redis as an
instance stuck mid-drain would; the rebalance is a second member joining the
daemon's control group on the real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from controller.adapters.redis.aggregates import connect
from controller.adapters.redis.rollouts import RolloutStore
from controller.daemon.outputs.outbox import DRAIN_LEASE_MS
from controller.ports import OutboxMessage, StateWrite
from controller.settings import RedisSettings
from tests.integration.rig import Rig
from tests.unit.core.machine.gate.test_gate import rollout

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GRACE_S = 3.0
FLAG = "f"


@contextlib.asynccontextmanager
async def lease_held_by_a_peer(store: RolloutStore) -> AsyncIterator[None]:
    """Hold ``FLAG``'s drain lease as another instance's drain would, renewing it."""
    assert await store.hold_drain(FLAG, "peer", ttl_ms=DRAIN_LEASE_MS)

    async def renew() -> None:
        while True:
            await asyncio.sleep(1)
            await store.hold_drain(FLAG, "peer", ttl_ms=DRAIN_LEASE_MS)

    renewing = asyncio.create_task(renew())
    try:
        yield
    finally:
        renewing.cancel()
        await store.end_drain(FLAG, "peer")


async def test_sigterm_mid_rebalance_while_a_drain_waits_on_a_peer_exits_within_the_grace(
    rig: Rig, tmp_path: Path
) -> None:
    settings = RedisSettings(url=rig.redis_url, key_prefix=rig.prefix)
    async with connect(settings) as client:
        await _stop_while_a_drain_waits(rig, tmp_path, RolloutStore(client, settings=settings))


async def _stop_while_a_drain_waits(rig: Rig, tmp_path: Path, store: RolloutStore) -> None:
    message = OutboxMessage(f"{rig.events}.flag-state", FLAG, b'{"held": "for the next drain"}')
    assert await store.save(FLAG, StateWrite(rev=0, rollout=rollout(), outbox=[message]))
    rig.env["RC_SHUTDOWN_GRACE_SECONDS"] = str(GRACE_S)
    daemon = rig.daemon(tmp_path)
    group = f"{rig.env['RC_KAFKA__GROUP_ID']}.control"
    joiner = AIOKafkaConsumer(
        f"{rig.events}.commands", bootstrap_servers=rig.bootstrap, group_id=group
    )
    try:
        async with lease_held_by_a_peer(store):
            daemon.start()
            # Waited for in a thread: this loop renews the peer's lease meanwhile, which
            # a daemon slow to start (a busy machine) would otherwise see expire, and take.
            await asyncio.to_thread(daemon.wait_for_log, "commands_partitions_assigned", 60)
            await joiner.start()  # a second member: the control group rebalances
            polling = asyncio.create_task(joiner.getmany(timeout_ms=30_000))
            await asyncio.to_thread(daemon.wait_for_log, "rebalancing", 30)
            code = await asyncio.to_thread(daemon.terminate, 60)
            polling.cancel()
            # 0: the drain ended within the grace (past it the daemon cancels and exits 3)
            log = daemon.log_text()
            assert code == 0, log[-3000:]
            assert '"event": "drain_deferred"' in log, log[-3000:]
        # Nothing was lost: the messages wait in the outbox for the next drain
        assert [m.value for m in await store.pending(FLAG)] == [message.value]
    finally:
        daemon.kill()
        await joiner.stop()
