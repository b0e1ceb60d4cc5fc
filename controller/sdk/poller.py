"""Flag states over HTTP, for apps that cannot read Kafka (edge workers, other networks).

:class:`FlagPoller` polls the controller's ``GET /flags`` every ``interval``
seconds with ``If-None-Match``, so an unchanged answer costs a 304, and
answers :meth:`~controller.sdk.client.FlagBook.arm` exactly as
:class:`controller.sdk.client.FlagClient` does: the same bucketing function over
the same states, so both kinds of app serve a unit the same arm. While the
controller is unreachable the last states are kept and the poller retries;
``ready`` is set after the first answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import httpx
from pydantic import ValidationError

from controller.core.messages import FlagState
from controller.sdk.client import FlagBook, Lifecycle, cancel

log = logging.getLogger("controller.sdk.poller")


class FlagPoller(FlagBook, Lifecycle):
    """The latest state of every flag, polled from the controller's ``/flags``."""

    def __init__(
        self,
        url: str,
        *,
        interval: float = 1.0,
        timeout: float = 5.0,
        states: Iterable[FlagState] = (),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(states)
        self._url = url.rstrip("/") + "/flags"
        self._interval = interval
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._etag: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.polls = 0
        self.failures = 0

    async def start(self) -> None:
        """Poll once (so ``ready`` is set when the controller answers), then keep polling."""
        if self._task is not None:
            return
        await self.poll()
        self._task = asyncio.create_task(self._run(), name="flag-poller")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
        await self._http.aclose()

    async def poll(self) -> bool:
        """One request; whether it succeeded (a 304 counts as success)."""
        self.polls += 1
        headers = {"If-None-Match": self._etag} if self._etag else {}
        try:
            response = await self._http.get(self._url, headers=headers)
        except httpx.HTTPError as exc:
            return self._failed(f"{type(exc).__name__}: {exc}")
        if response.status_code == 304:
            self.ready.set()
            return True
        if response.status_code != 200:
            return self._failed(f"HTTP {response.status_code}")
        try:
            items = response.json()
        except ValueError:
            return self._failed("the answer is not JSON")
        self._receive(items if isinstance(items, list) else [])
        self._etag = response.headers.get("ETag")
        self.ready.set()
        return True

    def _receive(self, items: list[Any]) -> None:
        now_ms = time.time_ns() // 1_000_000
        for item in items:
            try:
                state = FlagState.model_validate(
                    {
                        "type": "flag_state",
                        "v": 1,
                        "id": f"poll-v{item.get('version')}",
                        "ts": now_ms,
                        **item,
                    }
                )
            except (ValidationError, AttributeError, TypeError):
                self.invalid += 1
                continue
            self.apply(state)

    def _failed(self, why: str) -> bool:
        self.failures += 1
        log.warning("flag poll of %s failed: %s; keeping the last states", self._url, why)
        return False

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.poll()
