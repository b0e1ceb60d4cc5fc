"""What every Kafka client of the adapter shares: start, stop and ``async with``."""

from __future__ import annotations

import asyncio
from typing import Any, Self

from controller.adapters.kafka.errors import translated


class ClientLifecycle:
    """An aiokafka client behind ``start()``/``stop()`` (both idempotent) and ``async with``.

    A client that fails to start (or to start within ``_start_timeout_s``) is
    stopped again before the translated error is raised, so no connection is
    left behind.
    """

    _client: Any
    _started = False
    _context = ""
    """What the client is for, prefixed to the message of a failure to start."""
    _start_timeout_s: float | None = None

    async def start(self) -> None:
        if self._started:
            return
        # The timeout sits inside the translation: its TimeoutError becomes a BrokerError.
        with translated(self._context):
            async with asyncio.timeout(self._start_timeout_s):
                await self._start_client()
        self._started = True

    async def _start_client(self) -> None:
        try:
            await self._client.start()
            await self._on_started()
        except BaseException:
            await self._client.stop()
            raise

    async def _on_started(self) -> None:
        """Subscribe or position, for consumers; nothing for producers."""

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._client.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
