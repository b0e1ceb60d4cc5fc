"""OFREP's event streams: server-sent events telling connected clients to fetch again.

A client (OpenFeature's web provider, from the ``eventStreams`` of a bulk
answer) holds ``GET /ofrep/v1/events`` open; when a flag of its environment
changes (a kill, an advance, a rollback, a segment) it receives

    id: <tag>
    data: {"type": "refetchEvaluation", "etag": "<tag>"}

and fetches its flags again, sending the tag as ``flagConfigEtag``. The tag
is the environment's (:meth:`Snapshot.tag_of`), so a change elsewhere wakes
nobody here. A client that comes back with ``Last-Event-ID`` (as
``EventSource`` does by itself) or ``?flagConfigEtag=`` (the URL the bulk
answer gives carries the tag it answered from) is sent one event at once if
the tag moved since, none if not: each event means *fetch everything
again*, so several missed changes are one fetch, and a client told nothing
missed nothing.

Change is found once per process, not per connection: while any stream is
open, one watcher reloads the snapshot every ``check_seconds``
(:meth:`SnapshotCache.refresh`, the reload evaluations share), and every
reload whose tag moved, the watcher's or a request's, is fanned out to the
environment's connections. Fanning out only records the newest tag on each
connection and wakes its writer, so it never waits on a client: a client
that reads slowly holds one tag, not a queue, and one that stops reading is
dropped when a write has not drained within ``write_seconds``. Heartbeats
(an SSE comment every ``heartbeat_seconds``) keep proxies from closing an
idle stream and find dead peers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field

import orjson
import structlog
from aiohttp import web

from controller.adapters.ofrep.snapshot import Snapshot, SnapshotCache
from controller.core.common import ControllerError

CHECK_SECONDS = 0.2
"""How often the watcher reloads the snapshot while streams are open."""
HEARTBEAT_SECONDS = 15.0
WRITE_SECONDS = 10.0
"""How long a write may wait for a client to read before the client is dropped."""
RETRY_MS = 2000
"""How long a client's ``EventSource`` waits before it reconnects (the stream's ``retry``)."""
HEARTBEAT = b": heartbeat\n\n"
log = structlog.get_logger("controller.ofrep")


def refetch_event(tag: str) -> bytes:
    """The SSE event telling a client to fetch again, resumable from ``tag``."""
    data = orjson.dumps({"type": "refetchEvaluation", "etag": tag})
    return b"id: " + tag.encode() + b"\ndata: " + data + b"\n\n"


def missed(seen: str | None, current: str) -> bool:
    """Whether a client that last saw ``seen`` (None: it says nothing) must fetch again."""
    return seen is not None and seen != current


@dataclass(eq=False)
class Stream:
    """One client's open stream: the tag it last saw and the newest it must be told."""

    place: str | None
    client: str
    seen: str
    pending: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def tell(self, tag: str) -> None:
        """Note ``tag`` for the writer (replacing one not sent yet) and wake it."""
        if missed(self.seen, tag):
            self.pending = tag
            self.wake.set()


class StreamLimit(ControllerError):
    """A stream refused: too many open, in all or for its client; the client may try
    again once another closes (it is answered 429 with ``Retry-After``)."""

    retriable = True


class StreamHub:
    """The open streams, the one watcher, and the fan-out of changed tags."""

    def __init__(
        self,
        snapshots: SnapshotCache,
        *,
        max_streams: int,
        per_client: int,
        check_seconds: float = CHECK_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        write_seconds: float = WRITE_SECONDS,
    ) -> None:
        self._snapshots, self._check = snapshots, check_seconds
        self.max_streams, self.per_client = max_streams, per_client
        self._heartbeat, self._write = heartbeat_seconds, write_seconds
        self._streams: set[Stream] = set()
        self._by_client: Counter[str] = Counter()
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False
        snapshots.on_change = self.changed

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def open(self, place: str | None, client: str, seen: str, current: str) -> Stream:
        """A new stream of ``place`` for ``client``, told at once if it ``missed`` a change;
        StreamLimit past the bounds."""
        if self._closed or len(self._streams) >= self.max_streams:
            raise StreamLimit(f"the server holds its most event streams ({self.max_streams})")
        if self._by_client[client] >= self.per_client:
            raise StreamLimit(f"this client holds its most event streams ({self.per_client})")
        stream = Stream(place, client, seen)
        stream.tell(current)
        self._streams.add(stream)
        self._by_client[client] += 1
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="ofrep-stream-watcher")
        return stream

    def close(self, stream: Stream) -> None:
        if stream in self._streams:
            self._streams.discard(stream)
            self._by_client[stream.client] -= 1
            if self._by_client[stream.client] <= 0:
                del self._by_client[stream.client]

    def changed(self, snapshot: Snapshot) -> None:
        """Tell each stream its environment's tag in ``snapshot`` (a no-op where unchanged)."""
        tags: dict[str | None, str] = {}
        for stream in self._streams:
            if stream.place not in tags:
                tags[stream.place] = snapshot.tag_of(stream.place)
            stream.tell(tags[stream.place])

    async def serve(self, stream: Stream, response: web.StreamResponse) -> None:
        """Write ``stream``'s events and heartbeats until the client or the server goes."""
        await self._send(response, f"retry: {RETRY_MS}\n\n".encode())
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat):
                    await stream.wake.wait()
            stream.wake.clear()
            if self._closed:
                return
            tag, stream.pending = stream.pending, None
            if tag is None:
                await self._send(response, HEARTBEAT)
                continue
            stream.seen = tag
            await self._send(response, refetch_event(tag))

    async def _send(self, response: web.StreamResponse, data: bytes) -> None:
        """Write ``data``; TimeoutError when the client has not read it in ``write_seconds``."""
        async with asyncio.timeout(self._write):
            await response.write(data)

    async def _watch(self) -> None:
        """Reload the snapshot every ``check_seconds`` while any stream is open."""
        try:
            while self._streams and not self._closed:
                try:
                    await self._snapshots.refresh()
                except Exception as exc:
                    # The streams stay open; evaluations say 503 while the store is away.
                    log.warning("ofrep_stream_watch_failed", error=repr(exc)[:300])
                await asyncio.sleep(self._check)
        finally:
            self._watcher = None

    async def shut(self) -> None:
        """End every stream (the server is stopping) and the watcher."""
        self._closed = True
        for stream in self._streams:
            stream.wake.set()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
