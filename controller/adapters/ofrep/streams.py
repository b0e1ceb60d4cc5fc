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
that reads slowly holds one tag, not a queue. Heartbeats (an SSE comment
every ``heartbeat_seconds``) keep proxies from closing an idle stream.

What a stream holds is given back as soon as it is not used:

* a client that goes (it closes, or its connection is reset) gives its
  stream back at once: the same sweep that runs every ``check_seconds``
  finds its connection closed (the transport saw the end while reading),
  not the next heartbeat's write;
* a client that stops reading is dropped when a write has not reached the
  network within ``write_seconds``: each write waits until the server holds
  none of it (its socket's send buffer is small, :data:`SEND_BUFFER`), and
  the kernel drops a peer that acknowledges nothing for as long;
* a client whose system takes the bytes but whose app never reads them
  cannot be told from one that reads them (small events fit in its receive
  buffer for hours), so every stream ends after at most ``lifetime_seconds``
  (each a random 75 to 100 % of it, so streams opened together do not end
  together): its last words ask the client to come back in
  :data:`RESUME_MS`, and the client resumes from the last event it read
  (``Last-Event-ID``), missing nothing. A client that never reads never
  comes back, and its slot is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
import structlog
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from controller.adapters.ofrep.snapshot import Snapshot, SnapshotCache
from controller.core.common import ControllerError

CHECK_SECONDS = 0.2
"""How often the watcher reloads the snapshot while streams are open."""
HEARTBEAT_SECONDS = 15.0
WRITE_SECONDS = 10.0
"""How long a write may wait for a client to read before the client is dropped."""
LIFETIME_SECONDS = 60.0
"""The longest a stream lasts before the server ends it and the client resumes."""
RETRY_MS = 2000
"""How long a client's ``EventSource`` waits before it reconnects (the stream's ``retry``)."""
RESUME_MS = 100
"""How soon a client comes back to a stream the server ended for its age."""
SEND_BUFFER = 4096
"""A stream socket's send buffer (the kernel doubles it): what the server holds of what a
client has not taken, beside the one pending tag."""
HEARTBEAT = b": heartbeat\n\n"
log = structlog.get_logger("controller.ofrep")


def refetch_event(tag: str) -> bytes:
    """The SSE event telling a client to fetch again, resumable from ``tag``."""
    data = orjson.dumps({"type": "refetchEvaluation", "etag": tag})
    return b"id: " + tag.encode() + b"\ndata: " + data + b"\n\n"


def missed(seen: str | None, current: str) -> bool:
    """Whether a client that last saw ``seen`` (None: it says nothing) must fetch again."""
    return seen is not None and seen != current


@dataclass(frozen=True, slots=True)
class Peer:
    """The connection a stream is written to: whether it is still there, and its writes."""

    transport: asyncio.Transport
    writer: AbstractStreamWriter

    @classmethod
    def of(cls, request: web.Request, *, write_seconds: float) -> Peer | None:
        """``request``'s connection, set up for a stream (None: it has already gone).

        Its writes count as done once the server holds none of them (no
        buffering in the transport, a small send buffer in the kernel), and
        the kernel gives up on a peer that acknowledges nothing for
        ``write_seconds``.
        """
        transport = request.transport
        if transport is None or transport.is_closing():
            return None
        transport.set_write_buffer_limits(high=0)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux
                timeout_ms = max(1, int(write_seconds * 1000))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)
        return cls(transport, request.writer)

    def gone(self) -> bool:
        """Whether the connection has ended (the client closed or reset it, or it was cut)."""
        return self.transport.is_closing()

    def cut(self) -> None:
        """End the connection now, dropping what the client has not taken."""
        self.transport.abort()


@dataclass(eq=False)
class Stream:
    """One client's open stream: the tag it last saw and the newest it must be told, its
    connection, and when (``loop.time()``) it ends for its age."""

    place: str | None
    client: str
    seen: str
    peer: Peer
    ends: float
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
    """The open streams, the watcher and the sweeper, and the fan-out of changed tags."""

    def __init__(
        self,
        snapshots: SnapshotCache,
        *,
        max_streams: int,
        per_client: int,
        check_seconds: float = CHECK_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        write_seconds: float = WRITE_SECONDS,
        lifetime_seconds: float = LIFETIME_SECONDS,
    ) -> None:
        self._snapshots, self._check = snapshots, check_seconds
        self.max_streams, self.per_client = max_streams, per_client
        self._heartbeat, self.write_seconds = heartbeat_seconds, write_seconds
        self._lifetime = lifetime_seconds
        self._streams: set[Stream] = set()
        self._by_client: Counter[str] = Counter()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        snapshots.on_change = self.changed

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def open(self, place: str | None, client: str, seen: str, current: str, peer: Peer) -> Stream:
        """A new stream of ``place`` for ``client`` on ``peer``, told at once if it ``missed``
        a change; StreamLimit past the bounds."""
        if self._closed or len(self._streams) >= self.max_streams:
            raise StreamLimit(f"the server holds its most event streams ({self.max_streams})")
        if self._by_client[client] >= self.per_client:
            raise StreamLimit(f"this client holds its most event streams ({self.per_client})")
        # Not a secret: only spreads the ends of streams opened together.
        age = self._lifetime * random.uniform(0.75, 1.0)  # noqa: S311
        stream = Stream(place, client, seen, peer, asyncio.get_running_loop().time() + age)
        stream.tell(current)
        self._streams.add(stream)
        self._by_client[client] += 1
        self._keep_running("ofrep-stream-watcher", self._watch)
        self._keep_running("ofrep-stream-sweeper", self._sweep)
        return stream

    def close(self, stream: Stream) -> None:
        """Give ``stream``'s place back and wake its writer to end (a no-op once closed)."""
        if stream in self._streams:
            self._streams.discard(stream)
            self._by_client[stream.client] -= 1
            if self._by_client[stream.client] <= 0:
                del self._by_client[stream.client]
            stream.wake.set()

    def changed(self, snapshot: Snapshot) -> None:
        """Tell each stream its environment's tag in ``snapshot`` (a no-op where unchanged)."""
        tags: dict[str | None, str] = {}
        for stream in self._streams:
            if stream.place not in tags:
                tags[stream.place] = snapshot.tag_of(stream.place)
            stream.tell(tags[stream.place])

    async def serve(self, stream: Stream, response: web.StreamResponse) -> None:
        """Write ``stream``'s events and heartbeats until the client or the server goes, or
        the stream's age ends it; TimeoutError when a write has not reached the network in
        ``write_seconds`` (the caller cuts the connection)."""
        await self._send(stream, response, f"retry: {RETRY_MS}\n\n".encode())
        loop = asyncio.get_running_loop()
        while stream in self._streams and not self._closed:
            left = stream.ends - loop.time()
            if left <= 0:
                await self._end(stream, response)
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self._heartbeat, left)):
                    await stream.wake.wait()
            stream.wake.clear()
            if stream not in self._streams or self._closed:
                return
            tag, stream.pending = stream.pending, None
            if tag is not None:
                stream.seen = tag
                await self._send(stream, response, refetch_event(tag))
            elif stream.ends > loop.time():
                await self._send(stream, response, HEARTBEAT)

    async def _send(self, stream: Stream, response: web.StreamResponse, data: bytes) -> None:
        """Write ``data`` and wait until the server holds none of it; TimeoutError when
        that takes longer than ``write_seconds``."""
        async with asyncio.timeout(self.write_seconds):
            await response.write(data)
            await stream.peer.writer.drain()

    async def _end(self, stream: Stream, response: web.StreamResponse) -> None:
        """End ``stream`` for its age: ask the client to come back soon, and close."""
        await self._send(stream, response, f"retry: {RESUME_MS}\n\n".encode())
        async with asyncio.timeout(self.write_seconds):
            await response.write_eof()

    def _keep_running(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        if name not in self._tasks:
            self._tasks[name] = asyncio.create_task(self._while_open(name, step), name=name)

    async def _while_open(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` every ``check_seconds`` while any stream is open."""
        try:
            while self._streams and not self._closed:
                await step()
                await asyncio.sleep(self._check)
        finally:
            del self._tasks[name]

    async def _watch(self) -> None:
        """Reload the snapshot (its changes are fanned out by :meth:`changed`)."""
        try:
            await self._snapshots.refresh()
        except Exception as exc:
            # The streams stay open; evaluations say 503 while the store is away.
            log.warning("ofrep_stream_watch_failed", error=repr(exc)[:300])

    async def _sweep(self) -> None:
        """Give back the streams whose clients have gone."""
        for stream in [s for s in self._streams if s.peer.gone()]:
            self.close(stream)

    async def shut(self) -> None:
        """End every stream (the server is stopping), the watcher and the sweeper."""
        self._closed = True
        for stream in self._streams:
            stream.wake.set()
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
