"""Topics that go missing while the daemon runs are created again (#37).

Topics are created at start when ``kafka.create_topics`` is on. A broker
that comes back without its data has none of them, and whatever writes
first would otherwise get them with the broker's default partition count (or
not at all: the decisions topic, so ``rolloutctl`` waits on a topic that
does not exist). While the setting is on, the daemon looks every
:data:`CHECK_SECONDS` and creates the missing ones as configured, with a
warning alert; whether what the events partitions held was lost is ingest's
business (:mod:`controller.daemon.ingest.log_gaps`). A broker that lost one
topic may have lost them all, and apps learn their flags only from the
flag-state and segments topics: once it created any topic again, the keeper
has every flag's state and every segment published again (``recreated``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from controller.adapters.kafka import ensure_topics
from controller.core.common import ControllerError
from controller.core.rollouts import RaiseAlert
from controller.kit.deadlines import deadline
from controller.settings import KafkaSettings, TopicSettings

log = structlog.get_logger("controller.daemon.running.topics")
CHECK_SECONDS = 2.0
"""How often the daemon looks for missing topics."""
CHECK_DEADLINE_SECONDS = 10.0
"""The most one look may take: a hung broker never holds the loop (or a stop) longer."""


class TopicKeeper:
    """Creates the controller's topics again when the broker no longer has them."""

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        topics: TopicSettings,
        alarm: Callable[[RaiseAlert], None],
        recreated: Callable[[list[str]], Awaitable[object]] | None = None,
        every: float = CHECK_SECONDS,
    ) -> None:
        """``recreated`` is awaited with the topics created again, after the alert."""
        self._kafka, self._topics, self._alarm, self._every = kafka, topics, alarm, every
        self._recreated = recreated
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Look for missing topics every ``every`` seconds until :meth:`stop`."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._every)
            if not self._stopping.is_set():
                await self.check()

    async def check(self) -> list[str]:
        """Create the missing topics; return their names (none when the broker is away)."""
        try:
            async with deadline(CHECK_DEADLINE_SECONDS, "the topic check"):
                created = await ensure_topics(self._kafka, self._topics)
        except ControllerError as exc:
            log.debug("topic_check_skipped", error=str(exc)[:300])
            return []
        if created:
            log.warning("topics_recreated", topics=created)
            summary = (
                f"the broker no longer had the topics {created}; they were created again as"
                " configured. A broker that lost its topics may have lost records: events"
                " partitions whose log lost what was counted are held (see the"
                " events_log_gap alerts)."
            )
            self._alarm(RaiseAlert("topics_recreated", "warning", summary, {"topics": created}))
            if self._recreated is not None:
                await self._recreated(created)
        return created
