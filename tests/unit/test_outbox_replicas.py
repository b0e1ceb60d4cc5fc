"""The outbox publishes only what a replica has, and only what the master still holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from controller.adapters.memory import MemoryOutputs, MemoryStates
from controller.core.errors import StoreUnavailable
from controller.daemon.metrics import Metrics
from controller.daemon.outbox import Outbox
from controller.ports import OutboxMessage, StateWrite
from controller.settings import TopicSettings


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
