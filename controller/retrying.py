"""Retrying a call while it fails retriably, with a log line per failure and recovery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from controller.backoff import Backoff
from controller.core.errors import ControllerError

log = structlog.get_logger("controller.retry")
T = TypeVar("T")


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
