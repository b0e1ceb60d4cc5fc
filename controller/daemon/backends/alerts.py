"""What the flag-backend sync tells people: Unleash unreachable and back, a flag's sync failing.

Unleash unreachable: one ``backend_unreachable`` alert when a flag gets no
answer (a connection refused, a deadline passed, an answer that is no
Unleash answer), one ``backend_recovered`` alert once every such flag got
one again. The ``rollout_backend_unreachable`` gauge is 1 between the two.

A flag whose sync fails for another reason (a refusal that retrying does not
cure, a bug confined to that flag) is alerted once, until it syncs again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from controller.core.common import ControllerError
from controller.core.rollouts import RaiseAlert
from controller.core.wire import JsonObject
from controller.daemon.metrics import BackendMetrics
from controller.daemon.outputs import render_alert
from controller.ports import Outputs
from controller.process import Retry
from controller.settings import TopicSettings

log = structlog.get_logger("controller.daemon.backends.sync")


class BackendAlerts:
    """The sync's alerts, published with the one retry policy; the outage's bookkeeping."""

    def __init__(
        self,
        *,
        outputs: Outputs,
        topics: TopicSettings,
        retrying: Retry,
        metrics: BackendMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._outputs, self._topics, self._retrying = outputs, topics, retrying
        self._metrics, self._now = metrics, clock
        self._unanswered: dict[str, str] = {}
        self._failing: set[str] = set()

    @property
    def unanswered(self) -> set[str]:
        """The flags that got no answer from Unleash since their last one."""
        return set(self._unanswered)

    async def unreachable(self, flag: str, error: str) -> None:
        """``flag`` got no answer; the first such flag raises the outage."""
        first = not self._unanswered
        self._unanswered[flag] = error
        if not first:
            return
        self._metrics.unreachable.set(1)
        log.warning("backend_unreachable", flag=flag, error=error)
        summary = f"Unleash cannot be reached; its flags keep their last state: {error}"
        details: JsonObject = {"flag": flag, "error": error[:500]}
        await self.alert(
            None, RaiseAlert("backend_unreachable", "critical", summary[:500], details)
        )

    async def answered(self, flag: str) -> None:
        """``flag`` got an answer (or is no longer synced here); the last one ends the outage."""
        error = self._unanswered.pop(flag, None)
        if error is None or self._unanswered:
            return
        self._metrics.unreachable.set(0)
        log.info("backend_recovered")
        summary = "Unleash answers again; the decisions made meanwhile are being applied"
        details: JsonObject = {"error": error[:500]}
        await self.alert(None, RaiseAlert("backend_recovered", "info", summary, details))

    async def failed(self, flag: str, exc: Exception) -> None:
        """``flag``'s sync failed for good this time: logged each time, alerted once."""
        why = f"{type(exc).__name__}: {exc}"[:500]
        log.error("backend_sync_failed", flag=flag, error=why, exc_info=exc)
        if flag in self._failing:
            return
        self._failing.add(flag)
        summary = f"the Unleash sync of {flag} failed and is retried each sweep: {why}"
        await self.alert(flag, RaiseAlert("input_failed", "critical", summary[:500]))

    def synced(self, flag: str) -> None:
        """``flag`` synced: a later failure is alerted again."""
        self._failing.discard(flag)

    async def alert(self, flag: str | None, action: RaiseAlert) -> None:
        """Publish ``action`` as an alert; one that cannot be published is logged."""
        message = render_alert(flag, action, self._now(), self._topics)
        try:
            await self._retrying(
                lambda: self._outputs.publish([(message.topic, message.key, message.value)]),
                "backend alert",
            )
        except ControllerError as exc:
            log.warning("alert_not_published", error=str(exc)[:500])
