"""Alerts that concern no flag (Redis lost writes), published beside the work that found them.

The part that notices the trouble must not wait for the broker: ingest replays
the lost records at once, and the alert goes out in the background. It is
retried until the broker has it, whatever the broker answers meanwhile (one
that lost its data refuses writes in odd ways while its topics are created
again), and given up (with a log line) only when stopping or when it is too
large ever to go. An alert raised before the producer exists waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import structlog

from controller.core.common import BrokerError, ControllerError, MessageTooLarge
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
        self._early: list[tuple[RaiseAlert, str | None]] = []

    def attach(self, outputs: Outputs) -> None:
        """Publish through ``outputs`` from now on, the alerts raised before first."""
        self._outputs = outputs
        early, self._early = self._early, []
        for action, flag in early:
            self(action, flag)

    def __call__(self, action: RaiseAlert, flag: str | None = None) -> None:
        """Publish ``action`` in the background; about ``flag`` when it concerns one."""
        if self._outputs is None:
            self._early.append((action, flag))
            return
        task = asyncio.create_task(self._publish(self._outputs, action, flag), name="alarm")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, outputs: Outputs, action: RaiseAlert, flag: str | None) -> None:
        message = render_alert(flag, action, self._now(), self._topics)

        async def send() -> bool:
            try:
                await outputs.publish([(message.topic, message.key, message.value)])
            except MessageTooLarge:
                raise
            except ControllerError as exc:
                if exc.retriable:
                    raise
                # A refusal now is not a refusal for good: a topic being made again
                # answers writes with errors a broker never gives otherwise.
                raise BrokerError(str(exc), retriable=True) from exc
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
        for action, _flag in self._early:
            log.warning("alert_not_published", kind=action.kind, error="stopped before a producer")
        self._early = []
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
