"""Topics that go missing while the daemon runs are created again.

Topics are created at start when ``kafka.create_topics`` is on. A broker
that comes back without its data has none of them, and whatever writes
first would otherwise get them with the broker's default partition count (or
not at all: the decisions topic, so ``rolloutctl`` waits on a topic that
does not exist). While the setting is on, the daemon looks every
:data:`CHECK_SECONDS` and creates the missing ones as configured, with a
warning alert; whether what the events partitions held was lost is ingest's
business (:mod:`controller.daemon.ingest.log_gaps`). A broker that lost one
topic may have lost them all, and apps learn their flags only from the
flag-state and segments topics: once it created any topic again, or the
flag-state or segments topic was made again before the keeper looked (by an
operator, or a client: brokers may create a topic a client asks for), the keeper
has every flag's state and every segment published again (``recreated``). A
topic made again is told by its id (KIP-516) where the broker gives one, and
else by its log ending before it did: an empty log made again after an empty
one (the daemon's first state, published after the look) shows no such end,
and its id still changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

from controller.adapters.kafka import ensure_topics, log_ends, topic_ids
from controller.core.common import ControllerError
from controller.core.rollouts import RaiseAlert
from controller.kit.deadlines import deadline
from controller.kit.log_repeats import RepeatLimiter
from controller.settings import KafkaSettings, TopicSettings

log = structlog.get_logger("controller.daemon.running.topics")
CHECK_SECONDS = 2.0
"""How often the daemon looks for missing topics."""
CHECK_DEADLINE_SECONDS = 10.0
"""The most one look may take: a hung broker never holds the loop (or a stop) longer."""
REFUSAL_REPEAT_SECONDS = 60.0
"""A refusal that lasts is warned of once in this long, with the count of looks between
(each a debug line): not a warning every look."""


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``recreated`` is awaited with the topics created again, after the alert."""
        self._kafka, self._topics, self._alarm, self._every = kafka, topics, alarm, every
        self._recreated, self._clock = recreated, clock
        self._refusals = RepeatLimiter(REFUSAL_REPEAT_SECONDS)
        self._watched = [topics.flag_state, topics.segments]
        self._ends: dict[tuple[str, int], int] = {}
        """The watched topics' log ends at the last look."""
        self._ids: dict[str, str] = {}
        """The watched topics' ids as last seen (where the broker gives them)."""
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Look for missing topics at once, then every ``every`` seconds until :meth:`stop`.

        The first look is at once because it is the baseline of the watched logs' ends:
        a flag-state topic made again before it would never be seen to go back.
        """
        while not self._stopping.is_set():
            await self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._every)

    async def check(self) -> list[str]:
        """Create the missing topics; return their names (none when the broker is away).
        Publish every flag state and segment again when some were created, or when the
        flag-state or segments topic's log went back."""
        try:
            async with deadline(CHECK_DEADLINE_SECONDS, "the topic check"):
                created = await ensure_topics(self._kafka, self._topics)
                ends = await log_ends(self._kafka, self._watched)
                ids = await topic_ids(self._kafka, self._watched, timeout_s=CHECK_DEADLINE_SECONDS)
        except ControllerError as exc:
            self._skipped(exc)
            return []
        lost = sorted({*went_back(self._ends, ends), *made_again(self._ids, ids)})
        self._ends, self._ids = remembered(self._ends, ends), {**self._ids, **ids}
        if created:
            self._alert(created)
        if lost:
            log.warning("topic_log_went_back", topics=lost)
        if (created or lost) and self._recreated is not None:
            await self._recreated(sorted({*created, *lost}))
        return created

    def _skipped(self, exc: ControllerError) -> None:
        """A broker away or slow is a debug line; a refusal is a warning, once a
        :data:`REFUSAL_REPEAT_SECONDS` while it lasts, with how often it came between."""
        error = str(exc)[:300]
        if exc.retriable or isinstance(exc, TimeoutError):
            log.debug("topic_check_skipped", error=error)
            return
        verdict = self._refusals.see(error, self._clock())
        if not verdict.show:
            log.debug("topic_check_skipped", error=error)
        elif verdict.repeats is None:
            log.warning("topic_check_skipped", error=error)
        else:
            seconds = round(verdict.repeats.seconds, 1)
            repeats = {"repeated": verdict.repeats.count, "repeated_seconds": seconds}
            log.warning("topic_check_skipped", error=error, **repeats)

    def _alert(self, created: list[str]) -> None:
        log.warning("topics_recreated", topics=created)
        summary = (
            f"the broker no longer had the topics {created}; they were created again as"
            " configured. A broker that lost its topics may have lost records: events"
            " partitions whose log lost what was counted are held (see the"
            " events_log_gap alerts)."
        )
        self._alarm(RaiseAlert("topics_recreated", "warning", summary, {"topics": [*created]}))


def went_back(before: dict[tuple[str, int], int], now: dict[tuple[str, int], int]) -> list[str]:
    """The topics one of whose partitions' log ends before it did, or is gone: made again.

    A log's end only grows (compaction and retention remove records from within and
    before it), so an end below the last seen is a new log. A topic that is gone
    altogether is not named: it is created again, and then found.
    """
    topics_now = {topic for topic, _ in now}
    return sorted(
        {
            topic
            for (topic, partition), end in before.items()
            if topic in topics_now and now.get((topic, partition), -1) < end
        }
    )


def made_again(before: dict[str, str], now: dict[str, str]) -> list[str]:
    """The topics whose id is not the one last seen: deleted and made again since.

    A topic seen without an id (a broker without topic ids) or not seen now is not named.
    """
    return sorted(topic for topic, id_now in now.items() if before.get(topic, id_now) != id_now)


def remembered(
    before: dict[tuple[str, int], int], now: dict[tuple[str, int], int]
) -> dict[tuple[str, int], int]:
    """The baseline for the next look: ``now``, and the last ends seen of a topic absent now.

    A topic deleted between two questions of one look (it existed when the missing topics
    were created, not when the ends were asked) is absent for a moment. Forgetting its
    ends would let it come back, made by anyone, with nothing to have gone back from.
    """
    topics_now = {topic for topic, _ in now}
    kept = {key: end for key, end in before.items() if key[0] not in topics_now}
    return {**kept, **now}
