"""``POST /commands/check``: whether the controller would admit each signed command of a set
now, deciding none (:mod:`controller.core.reading.commands`). ``rolloutctl apply``
asks before it sends anything, so a set it may only send part of is not sent at all.

The operator's route: it wants the webhook token wherever one is set, as ``/rollouts``
does. The body, ``{"commands": [...]}`` of at most
:data:`~controller.core.reading.MAX_CHECKED_COMMANDS` commands in
:data:`~controller.core.reading.MAX_CHECK_BYTES`, is read within ``body_timeout_seconds``;
a command that breaks the contract is answered as refused with the reason, never its set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence

import orjson
from aiohttp import web
from pydantic import ValidationError

from controller.adapters.http.read_routes import error, same
from controller.core.reading import (
    MAX_CHECK_BYTES,
    CheckedCommand,
    CommandCheckRequest,
    CommandChecks,
)
from controller.core.trust import bearer
from controller.core.wire import JsonObject, summarize

Check = Callable[[Sequence[bytes]], Awaitable[list[CheckedCommand]]]


class CommandCheckRoute:
    """The check route over ``check`` (the command intake's)."""

    def __init__(self, check: Check, *, token: str | None, body_timeout_seconds: float) -> None:
        self._check, self._token, self._timeout = check, token, body_timeout_seconds

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post("/commands/check", self._answer)

    async def _answer(self, request: web.Request) -> web.Response:
        given = bearer(request.headers.get("Authorization")) or ""
        if self._token is not None and not same(given, self._token):
            return error(401, "the operator token is required (Authorization: Bearer)")
        if request.content_type != "application/json":
            return error(
                415, f"the body must be application/json, not {request.content_type!r}"[:200]
            )
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            asked = CommandCheckRequest.model_validate_json(body)
        except ValidationError as exc:
            return error(400, f'the body must be {{"commands": [...]}}: {summarize(exc)}'[:500])
        # The rollouts held are read for it: a store error is the server's 503, as any read's.
        results = await self._check([_encoded(command) for command in asked.commands])
        answer = CommandChecks(results=results).model_dump(mode="json")
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def _body(self, request: web.Request) -> bytes | web.Response:
        too_large = error(413, f"the body is over {MAX_CHECK_BYTES} bytes")
        if (request.content_length or 0) > MAX_CHECK_BYTES:
            return too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._timeout):
                # Read past aiohttp's client_max_size, which bounds the other routes.
                async for chunk in request.content.iter_any():
                    size += len(chunk)
                    if size > MAX_CHECK_BYTES:
                        return too_large
                    chunks.append(chunk)
        except TimeoutError:
            return error(408, f"the body did not arrive within {self._timeout:g} s")
        return b"".join(chunks)


def _encoded(command: JsonObject) -> bytes:
    """The command as it would be sent; an integer past 64 bits (which orjson does not write,
    and no command holds) is written by the standard library, for its check to refuse."""
    try:
        return orjson.dumps(command)
    except TypeError:
        return json.dumps(command).encode()
