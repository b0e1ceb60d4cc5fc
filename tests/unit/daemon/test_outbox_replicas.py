"""The outbox publishes only what a replica has, and only what the master still holds."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from controller.adapters.memory import MemoryOutputs, MemoryStates
from controller.core.common.errors import StoreUnavailable
from controller.daemon.metrics import Metrics
from controller.daemon.outputs.outbox import Outbox
from controller.ports import OutboxMessage, StateWrite
from controller.settings import TopicSettings
from tests.support.waiting import eventually


@dataclass
class FailingOver(MemoryStates):
    """States whose replica lags at first; then a failover loses the oldest saved entry."""

    waits: int = 0

    async def replicated(self, flag: str) -> None:
        self.waits += 1
        if self.waits == 1:
            raise StoreUnavailable("redis: 0 of 1 replicas acknowledged")
        if self.waits == 2:
            self.outbox[flag] = self.outbox[flag][1:]  # the promoted replica never had it


async def test_nothing_goes_out_before_a_replica_has_it_nor_what_a_failover_lost() -> None:
    states, outputs = FailingOver(), MemoryOutputs()
    outbox = Outbox(
        states=states,
        outputs=outputs,
        topics=TopicSettings(),
        metrics=Metrics(),
        clock=lambda: datetime(2026, 11, 23, tzinfo=UTC),
        stopping=asyncio.Event(),
    )
    messages = [OutboxMessage("rollout.decisions", "f", b'{"n": %d}' % i) for i in (1, 2)]
    await states.save("f", StateWrite(rev=-1, rollout=None, outbox=messages))
    # While no replica acknowledges, nothing is published and the flag waits for a retry
    with pytest.raises(StoreUnavailable):
        await outbox.drain("f")
    assert outputs.sent == []
    assert outbox.undrained == {"f"}
    # A failover then lost the first message's save: only the second goes out
    await outbox.drain("f")
    assert outputs.sent == [("rollout.decisions", "f", b'{"n": 2}')]
    assert outbox.undrained == set()
    assert await states.pending("f") == []


@dataclass
class Contended(MemoryStates):
    """States that count the tries to take a flag's drain lease."""

    tries: int = 0

    async def hold_drain(self, flag: str, token: str, *, ttl_ms: int) -> bool:
        self.tries += 1
        return await super().hold_drain(flag, token, ttl_ms=ttl_ms)


@pytest.mark.parametrize(
    ("stopping", "sent", "undrained"),
    [
        pytest.param(False, [(b'{"n": 1}')], set(), id="running: waits, then drains"),
        pytest.param(True, [], {"f"}, id="stopping: gives up, the messages kept"),
    ],
)
async def test_a_drain_waits_for_another_instances_lease_only_while_running(
    stopping: bool, sent: list[bytes], undrained: set[str]
) -> None:
    states, outputs, stop = Contended(), MemoryOutputs(), asyncio.Event()
    outbox = Outbox(
        states=states,
        outputs=outputs,
        topics=TopicSettings(),
        metrics=Metrics(),
        clock=lambda: datetime(2026, 11, 23, tzinfo=UTC),
        stopping=stop,
    )
    message = OutboxMessage("rollout.decisions", "f", b'{"n": 1}')
    await states.save("f", StateWrite(rev=-1, rollout=None, outbox=[message]))
    assert await states.hold_drain("f", "another instance", ttl_ms=10_000)
    draining = asyncio.create_task(outbox.drain("f"))

    def tried_again() -> bool:
        return states.tries >= 3  # the lease and two tries of the drain

    await eventually(tried_again, timeout=5, what="the drain trying for the lease again")
    assert not draining.done()  # the lease is another's: the drain waits
    if stopping:
        stop.set()
    else:
        await states.end_drain("f", "another instance")
    await asyncio.wait_for(draining, timeout=2)
    assert [value for _, _, value in outputs.sent] == sent
    assert outbox.undrained == undrained
    assert len(await states.pending("f")) == 1 - len(sent)
