"""``GET /v1/segments`` and ``GET /v1/segments/{name}``: segments for apps that poll.

The list names every segment with its version (and its size, or that it is a
rule), with an ETag, so an app polls it for the cost of a 304 and fetches a
segment only when its version moved. A segment's answer is its record, as
the segments topic carries it (signed when the controller has a key), with
the data of its id list's parts in order under ``part_data``; its ETag is its
version, checked before the parts are read, so an unchanged 1,000,000-id
list costs a 304 too. An unknown or deleted segment is a 404.

An id list is often personal data, and with it anyone could evaluate any
unit offline: both routes sit behind the reads' guard of
:class:`controller.adapters.http.read_routes.AppReadGuard` (an app key of scope
``evaluate`` where keys are required; 401 or 403 with the reason), unless
``http.public_flags`` says otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from controller.core.wire import SegmentName

_NAME: TypeAdapter[str] = TypeAdapter(SegmentName)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SegmentRoutes:
    """The routes, reading through the callables given (the daemon's segment reads)."""

    def __init__(
        self,
        *,
        listing: Callable[[], Awaitable[list[dict[str, Any]]]],
        version: Callable[[str], Awaitable[int | None]],
        whole: Callable[[str], Awaitable[dict[str, Any] | None]],
        key_id: str | None,
        guard: Callable[[Handler], Handler] | None = None,
    ) -> None:
        """``guard``: what wraps each route (who may read); none, open."""
        self._listing, self._version, self._whole = listing, version, whole
        self._key_id = key_id or "unsigned"
        self._guard = guard or (lambda handler: handler)

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/segments", self._guard(self._list))
        router.add_get("/v1/segments/{name}", self._guard(self._one))

    async def _list(self, request: web.Request) -> web.Response:
        body = orjson.dumps({"segments": await self._listing()}, option=orjson.OPT_SORT_KEYS)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        return _answer(request, body, etag)

    async def _one(self, request: web.Request) -> web.Response:
        try:
            name = _NAME.validate_python(request.match_info["name"])
        except ValidationError:
            return _error(400, "not a segment name")
        version = await self._version(name)
        if version is None:
            return _error(404, f"no segment named {name!r}")
        etag = f'"{name}:v{version}:{self._key_id}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        whole = await self._whole(name)
        if whole is None:
            return _error(404, f"no segment named {name!r}")
        etag = f'"{name}:v{whole["version"]}:{self._key_id}"'
        return _answer(request, orjson.dumps(whole), etag)


def _answer(request: web.Request, body: bytes, etag: str) -> web.Response:
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(body=body, content_type="application/json", headers={"ETag": etag})


def _error(status: int, reason: str) -> web.Response:
    body = orjson.dumps({"error": reason})
    return web.Response(status=status, body=body, content_type="application/json")
