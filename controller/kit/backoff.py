"""Exponential back-off by the one retry policy, that wakes up early when asked to stop.

Every retry loop gets its back-off from :func:`retry_backoff`, with the delays
of the one retry policy (:class:`~controller.settings.retry.RetrySettings`).
"""

from __future__ import annotations

import asyncio

from controller.settings.retry import RetrySettings

DEFAULT_RETRY = RetrySettings()
"""The policy of loops that are not given one: 0.1 s doubling to 5 s."""


class Backoff:
    """Delays from ``initial`` doubling to ``maximum``; :meth:`reset` after a success."""

    def __init__(self, *, initial: float, maximum: float, stopping: asyncio.Event) -> None:
        self._initial = initial
        self._maximum = maximum
        self._delay = initial
        self._stopping = stopping

    @property
    def delay(self) -> float:
        return self._delay

    def reset(self) -> None:
        self._delay = self._initial

    async def wait(self) -> bool:
        """Sleep the current delay, then lengthen it; True if stopping was asked meanwhile."""
        stopped = await sleep_or_stop(self._delay, self._stopping)
        self._delay = min(self._delay * 2, self._maximum)
        return stopped


def retry_backoff(stopping: asyncio.Event, policy: RetrySettings = DEFAULT_RETRY) -> Backoff:
    """A fresh back-off with ``policy``'s delays that ends early when ``stopping`` is set."""
    return Backoff(initial=policy.initial_seconds, maximum=policy.max_seconds, stopping=stopping)


async def sleep_or_stop(seconds: float, stopping: asyncio.Event) -> bool:
    """Sleep ``seconds`` unless ``stopping`` is set first; True if it was."""
    try:
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
