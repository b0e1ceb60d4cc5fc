"""Flag states over HTTP, for apps that cannot read Kafka (edge workers, other networks).

:class:`FlagPoller` polls the controller's ``GET /flags`` every ``interval``
seconds with ``If-None-Match``, so an unchanged answer costs a 304, and
answers :meth:`~controller.sdk.flags.FlagBook.arm` exactly as
:class:`controller.sdk.flags.FlagClient` does: the same bucketing function over
the same states, so both kinds of app serve a unit the same arm. While the
controller is unreachable the last states are kept and the poller retries;
``ready`` is set after the first answer. Each poll has one deadline of
``timeout`` seconds from first byte to last, and an answer larger than
``max_bytes`` is abandoned as soon as that is known (counted in
``oversized``), the last states kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from controller.core.rules import NO_SEGMENTS, SegmentLookup
from controller.core.wire import FlagState
from controller.kit.lifecycle import Lifecycle, cancel
from controller.sdk.flags import FlagBook
from controller.sdk.segment_poller import SegmentPoller
from controller.sdk.transport import AnswerTooLarge, FlagsEndpoint, HttpTransport, PollFailed

log = logging.getLogger("controller.sdk.poller")
MAX_ANSWER_BYTES = 8 * 1024 * 1024
"""A state is about 200 bytes: tens of thousands of flags fit."""


class FlagPoller(FlagBook, Lifecycle):
    """The latest state of every flag, polled from the controller's ``/flags``.

    With ``keys`` only states the controller signed are held (see
    :class:`~controller.sdk.flags.FlagBook`): TLS aside, this is what keeps a
    proxy or a server posing as the controller from serving its own states.

    With ``poll_segments`` it also polls ``/v1/segments`` with a
    :class:`~controller.sdk.segment_poller.SegmentPoller` under the same
    ``keys`` (every ``segments_interval`` seconds), started and stopped with
    it, and rules read it: ``segments`` is then that poller.

    ``api_key``: the app's key of scope ``evaluate``, which a controller that
    requires app keys wants for ``/flags`` and ``/v1/segments``.
    """

    def __init__(
        self,
        url: str,
        *,
        interval: float = 1.0,
        timeout: float = 5.0,
        max_bytes: int = MAX_ANSWER_BYTES,
        states: Iterable[FlagState] = (),
        transport: HttpTransport | None = None,
        keys: Mapping[str, str] | None = None,
        segments: SegmentLookup = NO_SEGMENTS,
        poll_segments: bool = False,
        segments_interval: float = 5.0,
        api_key: str | None = None,
        environment: str | None = None,
    ) -> None:
        self._segment_poller: SegmentPoller | None = None
        if poll_segments:
            if segments is not NO_SEGMENTS:
                raise TypeError("pass segments or poll_segments, not both")
            segments = self._segment_poller = SegmentPoller(
                url, interval=segments_interval, transport=transport, keys=keys, api_key=api_key
            )
        super().__init__(states, keys=keys, segments=segments, environment=environment)
        self._interval = interval
        self._endpoint = FlagsEndpoint(
            url.rstrip("/") + "/flags",
            timeout=timeout,
            max_bytes=max_bytes,
            transport=transport,
            api_key=api_key,
        )
        self._etag: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.polls = 0
        self.failures = 0
        self.oversized = 0
        """Answers abandoned for being larger than ``max_bytes`` (each a failure too)."""

    async def start(self) -> None:
        """Poll once (so ``ready`` is set when the controller answers), then keep polling."""
        if self._task is not None:
            return
        if self._segment_poller is not None:
            await self._segment_poller.start()
        await self.poll()
        self._task = asyncio.create_task(self._run(), name="flag-poller")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
        await self._endpoint.close()
        if self._segment_poller is not None:
            await self._segment_poller.stop()

    async def poll(self) -> bool:
        """One request; whether it succeeded (a 304 counts as success)."""
        self.polls += 1
        try:
            answer = await self._endpoint.get(self._etag)
        except PollFailed as exc:
            if isinstance(exc, AnswerTooLarge):
                self.oversized += 1
            return self._failed(str(exc))
        if not answer.unchanged:
            self._receive(answer.items)
            self._etag = answer.etag
        self.mark_ready()
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
        log.warning("flag poll of %s failed: %s; keeping the last states", self._endpoint.url, why)
        return False

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.poll()
