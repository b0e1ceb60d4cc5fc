"""Follows what the controller publishes: decisions, alerts and flag states.

Every decision and alert is appended to the decision log as it arrives, one
JSON object per line, exactly as it was published; everything is folded into
a :class:`~controller.demo.tracking.Tracker` for the view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

import orjson

from controller.adapters.kafka import TopicReader
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
        async with TopicReader(self._kafka, self._topics, from_end=False) as reader:
            while True:
                for value in await reader.values(0.2):
                    self._take(value)
                self._log.flush()

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
