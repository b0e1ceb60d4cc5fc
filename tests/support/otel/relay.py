"""A relay between the Collector and the controller that writes every record twice.

As a relay that retries each write whose answer it lost would: the same record value, at
a new offset, on the topics the daemon reads. :func:`caught_up` waits until the daemon has
flushed every partition of those topics to the end the relay wrote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.settings import RedisSettings
from tests.support.controller_process import ControllerProcess
from tests.support.waiting import eventually

SIGNALS = ("spans", "logs")


class Relay:
    """Writes each (signal, value) twice to ``topics[signal]``, partitions taken in turn."""

    def __init__(self, bootstrap: str, topics: dict[str, str], *, partitions: int) -> None:
        self._bootstrap, self._topics, self._partitions = bootstrap, topics, partitions
        self.ends = {(t, p): 0 for t in SIGNALS for p in range(partitions)}
        """The end offset each (signal, partition) has, as written."""
        self._turn = 0

    async def send(self, values: Sequence[tuple[str, bytes]], *, pace: float = 0) -> None:
        """Write ``values`` in order, each twice; ``pace`` seconds of rest every 4 values."""
        producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, linger_ms=2)
        await producer.start()
        try:
            for index, (signal, value) in enumerate(values):
                self._turn += 1
                partition = self._turn % self._partitions
                for _ in range(2):
                    sent = await producer.send(self._topics[signal], value, partition=partition)
                    written = await sent
                    self.ends[signal, partition] = written.offset + 1
                if pace and index % 4 == 3:
                    await asyncio.sleep(pace)
        finally:
            await producer.stop()


async def caught_up(
    redis: RedisSettings,
    *,
    events: str,
    topics: dict[str, str],
    relay: Relay,
    daemon: ControllerProcess,
    timeout: float = 120,
) -> None:
    """Wait until the daemon stored, for every partition of both topics (``topics[signal]``;
    ``events``, its events topic), the offset the relay's writes end at."""
    async with connect(redis) as client:
        stores = {
            signal: RedisAggregateStore(client, settings=redis, topic=events, source=topics[signal])
            for signal in SIGNALS
        }

        async def stored() -> bool:
            offsets = {(s, p): await stores[s].offset(p) or 0 for s, p in relay.ends}
            assert offsets == relay.ends, f"{offsets} != {relay.ends}\n{daemon.log_text()[-2000:]}"
            return True

        await eventually(stored, timeout=timeout, what="every OTLP record the relay wrote flushed")
