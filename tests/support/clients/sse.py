"""A server-sent events client over a real socket (httpx streaming), for the OFREP streams.

:func:`sse` opens a stream and hands back an :class:`SseStream`, whose
:meth:`SseStream.next` is the next item the server sent: an event (its
``id`` and decoded ``data``), a comment (a heartbeat) or a ``retry``.
Items are read by a task as they come, and time stamped on arrival, so a
test can say when a client heard of a change without timing its own waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson


@dataclass(frozen=True)
class Item:
    """One thing the server sent: ``kind`` is ``event``, ``comment`` or ``retry``; ``end``
    comes last, once the server has ended the stream."""

    kind: str
    id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    at: float = 0.0
    """``time.monotonic()`` when it arrived."""


@dataclass
class SseStream:
    response: httpx.Response
    items: asyncio.Queue[Item] = field(default_factory=asyncio.Queue)

    async def next(self, timeout: float = 30.0) -> Item:
        async with asyncio.timeout(timeout):
            return await self.items.get()

    async def next_event(self, timeout: float = 30.0) -> Item:
        """The next event, past heartbeats and ``retry``."""
        async with asyncio.timeout(timeout):
            while (item := await self.items.get()).kind != "event":
                pass
            return item


@asynccontextmanager
async def sse(
    client: httpx.AsyncClient, url: str, headers: Mapping[str, str] | None = None
) -> AsyncIterator[SseStream]:
    """The stream at ``url``; the response is checked by the caller (``stream.response``)."""
    async with client.stream(
        "GET", url, headers=headers, timeout=httpx.Timeout(30, read=None)
    ) as r:
        stream = SseStream(r)
        reader = asyncio.create_task(_read(r, stream.items)) if r.status_code == 200 else None
        try:
            yield stream
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                    await reader


async def _read(response: httpx.Response, items: asyncio.Queue[Item]) -> None:
    lines: list[str] = []
    async for line in response.aiter_lines():
        if line:
            lines.append(line)
            continue
        if lines:
            items.put_nowait(parsed(lines, time.monotonic()))
        lines = []
    items.put_nowait(Item("end", at=time.monotonic()))


def parsed(lines: list[str], at: float) -> Item:
    """One SSE block (its lines, without the blank line that ends it)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            return Item("comment", text=line[1:].strip(), at=at)
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    if "data" in fields:
        return Item("event", id=fields.get("id"), data=orjson.loads(fields["data"]), at=at)
    return Item("retry", text=fields.get("retry", ""), at=at)
