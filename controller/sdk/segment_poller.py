"""Segments over HTTP, for apps that poll the controller rather than read Kafka.

:class:`SegmentPoller` polls ``GET /v1/segments`` every ``interval`` seconds
with ``If-None-Match`` (an unchanged list costs a 304); for each segment whose
version moved it fetches ``GET /v1/segments/{name}`` and hands the record and
its parts to its :class:`~controller.sdk.segments.SegmentBook`, which checks
them (the list's count and SHA-256; the controller's signature with ``keys``)
before it answers from them. A segment no longer listed is dropped. While the
controller is unreachable the segments held keep answering; ``ready`` is set
after the first whole poll. Each request has one deadline of ``timeout``
seconds and an answer over ``max_bytes`` is abandoned (a 1,000,000-id list of
64-character ids is about 45 MB).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from controller.core.wire import SegmentRecord
from controller.kit.lifecycle import Lifecycle, cancel
from controller.sdk.segments import SegmentBook
from controller.sdk.transport import FlagsEndpoint, HttpTransport, PollFailed

log = logging.getLogger("controller.sdk.segments")
MAX_SEGMENT_BYTES = 96 * 1024 * 1024
"""The largest answer read for one segment."""


class SegmentPoller(SegmentBook, Lifecycle):
    """Every segment, polled from the controller's ``/v1/segments``."""

    def __init__(
        self,
        url: str,
        *,
        interval: float = 5.0,
        timeout: float = 30.0,
        max_bytes: int = MAX_SEGMENT_BYTES,
        transport: HttpTransport | None = None,
        keys: Mapping[str, str] | None = None,
        api_key: str | None = None,
    ) -> None:
        super().__init__(keys=keys)
        self._base = url.rstrip("/") + "/v1/segments"
        self._interval = interval
        options: dict[str, Any] = {"timeout": timeout, "max_bytes": max_bytes, "api_key": api_key}
        self._list = FlagsEndpoint(self._base, transport=transport, **options)
        self._one = FlagsEndpoint(self._base, transport=transport, **options)
        self._etag: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.polls = 0
        self.failures = 0

    async def start(self) -> None:
        """Poll once (``ready`` once the controller answered), then keep polling."""
        if self._task is not None:
            return
        await self.poll()
        self._task = asyncio.create_task(self._run(), name="segment-poller")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
        await self._list.close()
        await self._one.close()

    async def poll(self) -> bool:
        """One round: the list, then each segment that changed; whether all of it succeeded."""
        self.polls += 1
        try:
            answer = await self._list.get(self._etag)
            if not answer.unchanged:
                listed = _listed(answer.data)
                for name in set(self.names()) - set(listed):
                    self.delete(name)
                for name, version in listed.items():
                    if self.version(name) != version:
                        await self._fetch(name)
                self._etag = answer.etag
        except PollFailed as exc:
            self.failures += 1
            log.warning("segment poll of %s failed: %s; keeping the segments held", self._base, exc)
            return False
        self.ready.set()
        return True

    async def _fetch(self, name: str) -> None:
        self._one.url = f"{self._base}/{name}"
        answer = await self._one.get(None)
        body = answer.data
        if not isinstance(body, dict):
            raise PollFailed(f"{self._one.url} did not answer a segment")
        parts = body.pop("part_data", [])
        try:
            record = SegmentRecord.model_validate(body)
        except ValidationError:
            self.invalid += 1
            return
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            self.invalid += 1
            return
        self.receive_whole(record, parts)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.poll()


def _listed(data: Any) -> dict[str, int]:
    """``{name: version}`` of a ``/v1/segments`` answer; what is not one is left out."""
    rows = data.get("segments") if isinstance(data, dict) else None
    found: dict[str, int] = {}
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and isinstance(row.get("name"), str):
            version = row.get("version")
            if isinstance(version, int) and not isinstance(version, bool):
                found[row["name"]] = version
    return found
