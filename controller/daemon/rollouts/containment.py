"""Containment: a failure that no retry can fix stays with the one input that caused it.

A retriable error (broker or Redis unreachable) propagates, so the loop backs
off and tries the same work again. Anything else is logged with its
traceback, counted in ``rollout_contained_failures_total{where}`` and alerted
(``input_failed``); a record is also dead-lettered as ``processing_error``.
One damaged flag or one bad command so never stops the commands and gates of
every other flag.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import structlog

from controller.core.common import ControllerError
from controller.core.rollouts import RaiseAlert
from controller.core.wire import JsonObject, RejectReason
from controller.daemon.metrics import Metrics
from controller.daemon.outputs import render_alert
from controller.ports import DeadLetter, DeadLetters, Outputs, Record
from controller.settings import TopicSettings

log = structlog.get_logger("controller.daemon.rollouts.containment")
T = TypeVar("T")
Retry = Callable[[Callable[[], Awaitable[Any]], str], Awaitable[Any]]


class Containment:
    """Runs work that may fail for good, and reports each failing input once."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        outputs: Outputs,
        dead_letters: DeadLetters,
        topics: TopicSettings,
        clock: Callable[[], datetime],
        retry: Retry,
    ) -> None:
        self._metrics, self._outputs, self._dead_letters = metrics, outputs, dead_letters
        self._topics, self._now, self._retry = topics, clock, retry
        self._failing: set[str] = set()

    async def run(
        self,
        work: Awaitable[object],
        *,
        where: str,
        flag: str | None = None,
        record: Record | None = None,
    ) -> bool:
        """Run ``work``; whether it succeeded. A flag (or loop) that works again may alert anew."""
        try:
            await work
        except ControllerError as exc:
            if exc.retriable:
                raise
            await self._failed(exc, where=where, flag=flag, record=record)
            return False
        except Exception as exc:  # confined to this one input, and reported
            await self._failed(exc, where=where, flag=flag, record=record)
            return False
        if record is None:
            self._failing.discard(flag or where)
        return True

    async def _failed(
        self, exc: Exception, *, where: str, flag: str | None, record: Record | None
    ) -> None:
        why = f"{type(exc).__name__}: {exc}"[:500]
        self._metrics.contained.labels(where).inc()
        log.error("input_failed", where=where, flag=flag, error=why, exc_info=exc)
        if record is not None:
            letter = DeadLetter(record, RejectReason.PROCESSING_ERROR.value, why)
            await self._retry(lambda: self._dead_letters.publish([letter]), "dead-letter")
        elif (flag or where) in self._failing:
            return  # one alert per flag (or loop) until it works again
        else:
            self._failing.add(flag or where)
        summary = f"{where} failed and was set aside: {why}"
        await self._alert(flag if record is None else None, summary, {"where": where})

    async def _alert(self, flag: str | None, summary: str, details: JsonObject) -> None:
        """Publish an ``input_failed`` alert straight away, not through an outbox.

        The flag's own state may be what failed; a broker that refuses the
        alert for good is only logged, so reporting cannot loop.
        """
        action = RaiseAlert("input_failed", "critical", summary[:500], details)
        message = render_alert(flag, action, self._now(), self._topics)
        try:
            await self._retry(
                lambda: self._outputs.publish([(message.topic, message.key, message.value)]),
                "alert",
            )
        except ControllerError as exc:
            log.warning("alert_not_published", error=str(exc)[:500])
