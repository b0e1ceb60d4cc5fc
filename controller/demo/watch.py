"""Follows what the controller publishes: decisions, alerts and flag states.

Every decision and alert is appended to the decision log as it arrives, one
JSON object per line, exactly as it was published; everything is folded into
a :class:`~controller.demo.tracking.Tracker` for the view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer

from controller.demo.tracking import Tracker
from controller.settings import KafkaSettings

Listener = Callable[[dict[str, Any]], None]
LOGGED_TYPES = frozenset({"decision", "alert"})


class OutputWatcher:
    """Reads the decisions, alerts and flag-state topics from their beginning, until cancelled."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        topics: list[str],
        log: IO[bytes],
        tracker: Tracker,
        listener: Listener | None = None,
    ) -> None:
        self._kafka = kafka
        self._topics = topics
        self._log = log
        self._tracker = tracker
        self._listener = listener
        self.logged = 0

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            *self._topics,
            **self._kafka.client_options(),
            group_id=None,  # every partition, and no offsets left behind on the broker
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        self._take(record.value)
                self._log.flush()
        finally:
            await consumer.stop()

    def _take(self, value: bytes | None) -> None:
        try:
            message = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return  # the controller validates what it publishes; nothing to show here
        if not isinstance(message, dict):
            return
        if message.get("type") in LOGGED_TYPES:
            self._log.write((value or b"").strip() + b"\n")  # as published, byte for byte
            self.logged += 1
        self._tracker.observe(message)
        if self._listener is not None:
            self._listener(message)
