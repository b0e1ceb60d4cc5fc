"""What every client shares: ``start()``/``stop()`` and ``async with``, and cancelling its task.

The app SDK's clients (flag client, poller, emitter) and every Kafka client
(:class:`controller.kit.kafka_client.ClientLifecycle`) are such a lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self


class Lifecycle:
    """``start()``/``stop()`` (both idempotent) and ``async with``."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
