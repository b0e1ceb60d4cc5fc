"""Alerts that concern no flag (Redis lost writes), published beside the work that found them.

The part that notices the trouble must not wait for the broker: ingest replays
the lost records at once, and the alert goes out in the background, retried
while the broker is unreachable and given up (with a log line) when stopping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import structlog

from controller.core.common import ControllerError
from controller.core.rollouts import RaiseAlert
from controller.daemon.outputs.rendering import render_alert
from controller.kit.backoff import DEFAULT_RETRY
from controller.ports import Outputs
from controller.process import Retry
from controller.settings import RetrySettings, TopicSettings

log = structlog.get_logger("controller.daemon.outputs.alarms")


class Alarms:
    """Raises flag-less alerts on the alerts topic once :meth:`attach` gave it a producer."""

    def __init__(
        self,
        *,
        topics: TopicSettings,
        clock: Callable[[], datetime],
        retry: RetrySettings = DEFAULT_RETRY,
    ) -> None:
        self._topics, self._now = topics, clock
        self._outputs: Outputs | None = None
        self._stopping = asyncio.Event()
        self._retry = Retry(self._stopping, retry)
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, outputs: Outputs) -> None:
        self._outputs = outputs

    def __call__(self, action: RaiseAlert, flag: str | None = None) -> None:
        """Publish ``action`` in the background; about ``flag`` when it concerns one."""
        if self._outputs is None:
            log.warning("alert_not_published", kind=action.kind, error="no producer yet")
            return
        task = asyncio.create_task(self._publish(self._outputs, action, flag), name="alarm")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, outputs: Outputs, action: RaiseAlert, flag: str | None) -> None:
        message = render_alert(flag, action, self._now(), self._topics)

        async def send() -> bool:
            await outputs.publish([(message.topic, message.key, message.value)])
            return True

        try:
            sent = await self._retry(send, "alert")
        except ControllerError as exc:
            log.warning("alert_not_published", kind=action.kind, error=str(exc)[:500])
            return
        if sent is None:
            log.warning("alert_not_published", kind=action.kind, error="stopped first")

    async def stop(self) -> None:
        """Give the alerts in flight a last try, then stop retrying them."""
        self._stopping.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
