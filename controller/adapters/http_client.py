"""Plain HTTP calls of the operator's tools: the controller's API, readiness probes, webhooks.

The daemon's own HTTP server is :mod:`controller.adapters.http.server`; the model
client is :mod:`controller.adapters.llm`. This module is the one place the
tools (``rolloutctl``, the demo, the dev tooling) use httpx, and it turns
httpx's errors into :class:`Unreachable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import httpx
import orjson

from controller.core.common import ControllerError
from controller.kit.deadlines import (
    DeadlineExceeded,
    TooLarge,
    deadline,
    read_bounded,
    read_bounded_sync,
    within,
)

MAX_ANSWER_BYTES = 64 * 1024
"""A webhook's answer is a word or a short error: anything longer is cut off unread."""
MAX_API_ANSWER_BYTES = 64 * 1024 * 1024
"""The controller's read API at its largest (a rollout's whole history for a report)."""


class Unreachable(ControllerError):
    """No answer came: the connection failed or timed out. The message names the cause."""

    retriable = True


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: its status, its headers (case-insensitive) and its body as text."""

    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        """The body as JSON; ValueError if it is not."""
        return orjson.loads(self.text)


def get(
    url: str,
    *,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
    max_bytes: int = MAX_API_ANSWER_BYTES,
) -> Answer:
    """GET ``url``; :class:`Unreachable` if no whole answer of at most ``max_bytes`` came.

    ``timeout_s`` bounds the whole exchange, not each read: a server that
    drips its answer cannot hold the tool (see :mod:`controller.kit.deadlines`).
    """
    return _exchange("GET", url, None, timeout_s=timeout_s, headers=headers, max_bytes=max_bytes)


def post(
    url: str,
    body: bytes,
    *,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
    max_bytes: int = MAX_API_ANSWER_BYTES,
) -> Answer:
    """POST ``body`` as JSON to ``url``, bounded as :func:`get` is."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    return _exchange("POST", url, body, timeout_s=timeout_s, headers=sent, max_bytes=max_bytes)


def _exchange(
    method: str,
    url: str,
    body: bytes | None,
    *,
    timeout_s: float,
    headers: Mapping[str, str] | None,
    max_bytes: int,
) -> Answer:
    """One request, its whole answer read within ``timeout_s`` and ``max_bytes``."""
    try:
        with httpx.stream(
            method, url, content=body, timeout=timeout_s, headers=headers
        ) as response:
            declared = response.headers.get("content-length")
            chunks = within(response.iter_bytes(), timeout_s, method)
            raw = read_bounded_sync(chunks, max_bytes, declared=declared)
            text = raw.decode(response.encoding or "utf-8", errors="replace")
            return Answer(response.status_code, response.headers, text)
    except httpx.HTTPError as exc:
        raise Unreachable(str(exc)) from exc
    except (DeadlineExceeded, TooLarge) as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from exc


def answers_ok(url: str, *, timeout_s: float) -> bool:
    """Whether ``url`` answers a GET with 200 within ``timeout_s``."""
    try:
        return get(url, timeout_s=timeout_s).status == httpx.codes.OK
    except Unreachable:
        return False


async def answers_ok_async(url: str, *, timeout_s: float) -> bool:
    """:func:`answers_ok` for a caller inside an event loop."""
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        try:
            return (await client.get(url)).status_code == httpx.codes.OK
        except httpx.HTTPError:
            return False


class JsonPoster:
    """POSTs JSON bodies over one connection pool; use it with ``async with``.

    Each POST has one deadline of ``timeout_s`` from its first byte sent to
    the last byte of the answer read, so a receiver dripping its answer
    cannot hold the alert forwarder; the answer is read up to
    :data:`MAX_ANSWER_BYTES`.
    """

    def __init__(self, *, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def post(self, url: str, body: bytes) -> Answer:
        """POST ``body`` as JSON; :class:`Unreachable` ("ErrorType: detail") if no answer came."""
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        try:
            async with (
                deadline(self._timeout_s, "POST"),
                self._client.stream("POST", url, content=body, headers=headers) as response,
            ):
                declared = response.headers.get("content-length")
                raw = await read_bounded(
                    response.aiter_bytes(), MAX_ANSWER_BYTES, declared=declared
                )
                text = raw.decode("utf-8", errors="replace")
                return Answer(response.status_code, response.headers, text)
        except (httpx.TransportError, DeadlineExceeded, TooLarge) as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()
