"""Plain HTTP calls of the operator's tools: the controller's API, readiness probes, webhooks.

The daemon's own HTTP server is :mod:`controller.adapters.http.server`; the model
client is :mod:`controller.adapters.llm`. This module is the one place the
tools (``rolloutctl``, the demo, the dev tooling) make HTTP calls, and it turns
their errors into :class:`Unreachable`.

A blocking call (:func:`get`, :func:`post`) goes through the standard library, as a
command someone waits for should: ``rolloutctl status`` loads no HTTP client library
(httpx alone loads some 150 modules, its command line's among them). It does what httpx
did for it: proxies from the environment, no redirect followed (a 3xx is an answer), a
4xx or 5xx an answer too. The calls from inside an event loop (:func:`answers_ok_async`,
:class:`JsonPoster`) use httpx, loaded when first used.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

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

if TYPE_CHECKING:
    import httpx

MAX_ANSWER_BYTES = 64 * 1024
"""A webhook's answer is a word or a short error: anything longer is cut off unread."""
MAX_API_ANSWER_BYTES = 64 * 1024 * 1024
"""The controller's read API at its largest (a rollout's whole history for a report)."""
CHUNK_BYTES = 64 * 1024


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


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is the answer, as httpx gives it, not a request to follow."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


class Headers(Mapping[str, str]):
    """An answer's headers, read whatever their case (a header given twice joined by ", ")."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._values: dict[str, str] = {}
        for name, value in pairs:
            key = name.lower()
            self._values[key] = f"{self._values[key]}, {value}" if key in self._values else value

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


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
    if urlsplit(url).scheme not in {"http", "https"}:
        raise Unreachable(f"{url[:200]!r} is no http:// or https:// URL")
    request = urllib.request.Request(  # noqa: S310 - http and https only, checked above
        url, data=body, headers=dict(headers or {}), method=method
    )
    try:
        try:
            response = _OPENER.open(request, timeout=timeout_s)
        except urllib.error.HTTPError as refused:  # a 4xx or 5xx is an answer, not a failure
            response = refused
        with response:
            return _read(response, method, timeout_s=timeout_s, max_bytes=max_bytes)
    except (DeadlineExceeded, TooLarge) as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise Unreachable(_reason(exc)) from exc


def _read(response: Any, method: str, *, timeout_s: float, max_bytes: int) -> Answer:
    """The answer's status, headers and body, read a socket's worth at a time: each read is
    bounded by the socket's timeout, the whole by ``timeout_s``."""
    declared = response.headers.get("content-length")
    chunks = within(iter(lambda: response.read1(CHUNK_BYTES), b""), timeout_s, method)
    raw = read_bounded_sync(chunks, max_bytes, declared=declared)
    text = raw.decode(response.headers.get_content_charset() or "utf-8", errors="replace")
    return Answer(response.status, Headers(response.headers.items()), text)


def _reason(exc: BaseException) -> str:
    """A failure in words: what the standard library wraps (a refused connection), unwrapped."""
    cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return str(cause) or type(cause).__name__


def answers_ok(url: str, *, timeout_s: float) -> bool:
    """Whether ``url`` answers a GET with 200 within ``timeout_s``."""
    try:
        return get(url, timeout_s=timeout_s).status == HTTPStatus.OK
    except Unreachable:
        return False


async def answers_ok_async(url: str, *, timeout_s: float) -> bool:
    """:func:`answers_ok` for a caller inside an event loop."""
    import httpx  # noqa: PLC0415 - loaded by the callers inside an event loop only

    async with httpx.AsyncClient(timeout=timeout_s) as client:
        try:
            return (await client.get(url)).status_code == HTTPStatus.OK
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
        import httpx  # noqa: PLC0415 - loaded by the callers inside an event loop only

        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient = httpx.AsyncClient(timeout=timeout_s)
        self._transport_error = httpx.TransportError

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
        except (self._transport_error, DeadlineExceeded, TooLarge) as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()
