"""What the event stream route needs beside the hub: its bounds, its response, its client.

The stream is ``GET /ofrep/v1/events`` (under ``/env/{environment}`` too),
announced in each bulk answer's ``eventStreams`` as a path on the server the
client already asks (``endpoint.requestUri``, so it works behind whatever
host name the client uses).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from controller.adapters.http import EXPOSED, Alternative, key_of
from controller.adapters.ofrep.snapshot import Snapshot
from controller.adapters.ofrep.streams import (
    CHECK_SECONDS,
    HEARTBEAT_SECONDS,
    LIFETIME_SECONDS,
    WRITE_SECONDS,
)
from controller.core.release import Environments
from controller.core.trust import (
    Admitted,
    AppKey,
    Policy,
    Refused,
    request_environment,
    stream_token,
    token_access,
    token_key,
)

STREAM_PATH = "/ofrep/v1/events"
MAX_TAG_CHARS = 64
"""The longest ``flagConfigEtag`` or ``Last-Event-ID`` read; ours are 32 hex digits."""


@dataclass(frozen=True, slots=True)
class StreamBounds:
    """How many event streams may be open, in all and per client, and their timing
    (:mod:`.streams` says what each bounds)."""

    max_streams: int = 0
    per_client: int = 0
    check_seconds: float = CHECK_SECONDS
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    write_seconds: float = WRITE_SECONDS
    lifetime_seconds: float = LIFETIME_SECONDS

    def hub_args(self) -> dict[str, Any]:
        return {
            "max_streams": self.max_streams,
            "per_client": self.per_client,
            "check_seconds": self.check_seconds,
            "heartbeat_seconds": self.heartbeat_seconds,
            "write_seconds": self.write_seconds,
            "lifetime_seconds": self.lifetime_seconds,
        }


NO_STREAMS = StreamBounds()
"""No event streams: bulk answers announce none, and a stream request is refused (429)."""


def behind(snapshot: Snapshot, place: str | None, told: str | None) -> bool:
    """Whether a refetch names a tag (``flagConfigEtag``) other than the snapshot's for
    ``place``: a stream (maybe another replica's) saw a newer one, so the snapshot is
    read again rather than answered from."""
    return told is not None and 0 < len(told) <= MAX_TAG_CHARS and told != snapshot.tag_of(place)


def announced(
    request: web.Request, environment: str, tag: str | None, *, max_streams: int
) -> dict[str, Any]:
    """The ``eventStreams`` of a bulk answer or the configuration: this environment's
    stream, resumable from ``tag``, with a token for the key the request was admitted
    with (none where no stream may open)."""
    if max_streams <= 0:
        return {}
    key = key_of(request)
    query = ({} if tag is None else {"flagConfigEtag": tag}) | (
        {} if key is None else {"token": stream_token(key, environment)}
    )
    prefix = request.path[: request.path.find("/ofrep/v1/")]
    uri = f"{prefix}{STREAM_PATH}" + (f"?{urlencode(query)}" if query else "")
    return {"eventStreams": [{"type": "sse", "endpoint": {"requestUri": uri}}]}


def token_judge(served: Callable[[], Environments], policy: Policy) -> Alternative:
    """How the stream route judges a token in its URL (a browser's ``EventSource`` sends
    no header), for the environments served at the time of the request."""

    def by_token(request: web.Request, keys: Mapping[str, AppKey]) -> Admitted | Refused | None:
        """The token's verdict for the environment the request names or the token's key is
        bound to; None without a token."""
        token = request.query.get("token")
        if token is None:
            return None
        key = token_key(token, keys)
        named = request.match_info.get("environment")
        environment = served().of(request_environment(key, named))
        origin = request.headers.get("Origin")
        return token_access(token, environment, key, origin=origin, policy=policy)

    return by_token


def opened(request: web.Request, origins: frozenset[str]) -> web.StreamResponse:
    """The stream's response, with CORS set before its head goes out (the guard's come
    too late for a streamed answer). Its connection closes with it: a stream that ends
    leaves nothing open behind it, even for a client that never reads."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass events on, do not buffer them
        }
    )
    response.force_close()
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
