"""Recording the gate history: thinned gate points, and the decisions and alerts published.

The history is for people looking back, so it must never cost a gate: the
decision to keep a point is taken in memory (:func:`controller.core.reading.history.due`
against the last point kept per flag), and a store that fails is logged and
counted, never raised into the engine. After a restart the first gate of each
flag is kept again, which costs one point.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime

import structlog

from controller.core.common import ControllerError
from controller.core.reading import history
from controller.core.rollouts import Rollout, Verdict
from controller.ports import GateHistory, OutboxMessage
from controller.settings import HistorySettings, TopicSettings

log = structlog.get_logger("controller.daemon.rollouts.history")


class Recorder:
    """Feeds a :class:`~controller.ports.GateHistory` from the engine, off its critical path."""

    def __init__(
        self, *, store: GateHistory | None, settings: HistorySettings, topics: TopicSettings
    ) -> None:
        self._store = store if settings.enabled else None
        self._settings = settings
        self._topics = topics
        self._last: dict[str, tuple[str, history.GatePoint]] = {}
        self.failures = 0
        """Writes that failed (logged; the history has a gap there)."""

    async def gate(self, flag: str, rollout: Rollout, verdict: Verdict, now: datetime) -> None:
        """Keep this gate's point for ``flag`` if it is due (see :func:`history.due`)."""
        if self._store is None:
            return
        point = history.point_of(rollout, verdict, now)
        last = self._last.get(flag)
        previous = last[1] if last is not None and last[0] == rollout.rollout_id else None
        started_ms = int(rollout.stage_started_at.timestamp() * 1000)
        if not history.due(
            previous,
            point,
            stage_started_ms=started_ms,
            min_interval_s=self._settings.min_interval_seconds,
            points_per_stage=self._settings.points_per_stage,
        ):
            return
        self._last[flag] = (rollout.rollout_id, point)
        encoded = history.encode(point)
        await self._guarded(
            self._store.append_point(flag, rollout.rollout_id, rollout.stage, encoded)
        )

    @classmethod
    def disabled(cls, topics: TopicSettings) -> Recorder:
        """A recorder that keeps nothing."""
        return cls(store=None, settings=HistorySettings(enabled=False), topics=topics)

    def forget(self, flag: str) -> None:
        """``flag`` is no longer gated here: drop what is kept in memory for it."""
        self._last.pop(flag, None)

    async def published(self, flag: str, messages: list[OutboxMessage]) -> None:
        """Keep the decisions and alerts among ``messages`` (saved for publishing)."""
        if self._store is None:
            return
        for message in messages:
            if message.topic in (self._topics.decisions, self._topics.alerts):
                alert = message.topic == self._topics.alerts
                await self._guarded(self._store.append_message(flag, message.value, alert=alert))

    async def _guarded(self, write: Awaitable[None]) -> None:
        try:
            await write
        except ControllerError as exc:
            self.failures += 1
            log.warning("history_write_failed", error=str(exc)[:300])
