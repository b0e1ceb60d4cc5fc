"""Retrying a call while it fails retriably, with a log line per failure and recovery.

:class:`Retry` is the one way the daemon's loops retry: bound to the loop's
stop event and the retry policy (``settings.retry``), it runs each call with a
fresh back-off from :func:`controller.kit.backoff.retry_backoff`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from controller.core.common import ControllerError
from controller.kit.backoff import DEFAULT_RETRY, Backoff, retry_backoff
from controller.settings.retry import RetrySettings

log = structlog.get_logger("controller.retry")
T = TypeVar("T")


class Retry:
    """Runs calls until they succeed, backing off by ``policy`` while they fail retriably."""

    def __init__(self, stopping: asyncio.Event, policy: RetrySettings = DEFAULT_RETRY) -> None:
        self._stopping = stopping
        self._policy = policy

    async def __call__(
        self,
        call: Callable[[], Awaitable[T]],
        what: str,
        *,
        on_outage: Callable[[], None] | None = None,
        on_recovery: Callable[[], None] | None = None,
    ) -> T | None:
        """:func:`retrying` with a fresh back-off; None if stopping was asked first."""
        backoff = retry_backoff(self._stopping, self._policy)
        return await retrying(
            call, what=what, backoff=backoff, on_outage=on_outage, on_recovery=on_recovery
        )


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    backoff: Backoff,
    on_outage: Callable[[], None] | None = None,
    on_recovery: Callable[[], None] | None = None,
) -> T | None:
    """Run ``call``; while it fails retriably, log, back off and try again.

    ``on_outage`` runs at the first failure and ``on_recovery`` after a success
    that followed failures (ingest pauses and resumes fetching with them).
    Non-retriable errors propagate. Returns None only when stopping was asked
    before the call succeeded.
    """
    failed = False
    while True:
        try:
            result = await call()
        except ControllerError as exc:
            if not exc.retriable:
                raise
            if not failed and on_outage is not None:
                on_outage()
            failed = True
            log.warning("retrying", what=what, error=str(exc), delay_s=round(backoff.delay, 3))
            if await backoff.wait():
                return None
            continue
        if failed:
            if on_recovery is not None:
                on_recovery()
            log.info("recovered", what=what)
        return result
