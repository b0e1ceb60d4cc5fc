"""What the event stream route needs beside the hub: its bounds, its response, its client.

The stream is ``GET /ofrep/v1/events`` (under ``/env/{environment}`` too),
announced in each bulk answer's ``eventStreams`` as a path on the server the
client already asks (``endpoint.requestUri``, so it works behind whatever
host name the client uses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from controller.adapters.app_access import EXPOSED, key_of
from controller.adapters.ofrep.snapshot import Snapshot
from controller.adapters.ofrep.streams import CHECK_SECONDS, HEARTBEAT_SECONDS, WRITE_SECONDS

STREAM_PATH = "/ofrep/v1/events"
MAX_TAG_CHARS = 64
"""The longest ``flagConfigEtag`` or ``Last-Event-ID`` read; ours are 32 hex digits."""


@dataclass(frozen=True, slots=True)
class StreamBounds:
    """How many event streams may be open, in all and per client, and their timing."""

    max_streams: int = 0
    per_client: int = 0
    check_seconds: float = CHECK_SECONDS
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    write_seconds: float = WRITE_SECONDS

    def hub_args(self) -> dict[str, Any]:
        return {
            "max_streams": self.max_streams,
            "per_client": self.per_client,
            "check_seconds": self.check_seconds,
            "heartbeat_seconds": self.heartbeat_seconds,
            "write_seconds": self.write_seconds,
        }


NO_STREAMS = StreamBounds()
"""No event streams: bulk answers announce none, and a stream request is refused (429)."""


def behind(snapshot: Snapshot, place: str | None, told: str | None) -> bool:
    """Whether a refetch names a tag (``flagConfigEtag``) other than the snapshot's for
    ``place``: a stream (maybe another replica's) saw a newer one, so the snapshot is
    read again rather than answered from."""
    return told is not None and 0 < len(told) <= MAX_TAG_CHARS and told != snapshot.tag_of(place)


def opened(request: web.Request, origins: frozenset[str]) -> web.StreamResponse:
    """The stream's response, with CORS set before its head goes out (the guard's come
    too late for a streamed answer)."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass events on, do not buffer them
        }
    )
    origin = request.headers.get("Origin")
    if origin is not None and origin in origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED
        response.headers["Vary"] = "Origin"
    return response


def streamer(request: web.Request) -> str:
    """Whom a stream counts against: its app key, else its remote address."""
    key = key_of(request)
    return f"key:{key.id}" if key is not None else f"addr:{request.remote or 'unknown'}"
