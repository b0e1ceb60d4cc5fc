"""Prometheus' HTTP query API: the metric source guardrails read.

Each instant query is one ``POST /api/v1/query`` (a form body, so a long
query never meets a URL limit), bounded whatever the server does:

* one deadline (``query_timeout_seconds``) over the whole exchange, from the
  first byte sent to the last byte read (:func:`controller.kit.deadlines.deadline`):
  a server dripping its answer fails the query within it;
* the answer is read as a stream, uncompressed (``Accept-Encoding: identity``),
  and abandoned past ``max_answer_bytes``, or at once when its
  ``Content-Length`` says more;
* redirects are never followed (a 3xx is refused, naming where it pointed:
  a login proxy, a moved server), and only ``application/json`` is read, so
  an HTML login page answered with 200 is no answer;
* the JSON is read strictly (:mod:`~controller.adapters.prometheus.answers`).

Every failure is a :class:`SourceUnavailable` whose message says why: the
daemon keeps the last good reading, the gate holds once it is stale, and an
alert names the server and the setting (``prometheus.url``) after a grace.

:func:`check_syntax` is ``rolloutctl plan validate``'s: it asks the server to
parse a query without running it (``/api/v1/format_query``, Prometheus 2.31
and later; a server without it evaluates the query at the Unix epoch, where
no data is, so it costs nothing).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Self

import httpx
import orjson

from controller.adapters.prometheus.answers import SourceUnavailable, decode
from controller.core.metrics_source import Answer
from controller.kit.deadlines import (
    DeadlineExceeded,
    TooLarge,
    deadline,
    read_bounded,
    read_bounded_sync,
    within,
)
from controller.settings import PrometheusSettings, mask_url

QUERY_PATH = "/api/v1/query"
PARSE_PATH = "/api/v1/format_query"
_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}


def where(settings: PrometheusSettings) -> str:
    """The server as the operator finds it in the settings."""
    url = mask_url(settings.url) if settings.url else "no server"
    return f"prometheus at {url} (setting prometheus.url)"


def _auth(settings: PrometheusSettings) -> dict[str, str]:
    if settings.bearer_token is not None:
        return {"Authorization": f"Bearer {settings.bearer_token.get_secret_value()}"}
    return {}


def _basic(settings: PrometheusSettings) -> httpx.BasicAuth | None:
    if settings.username is None or settings.password is None:
        return None
    return httpx.BasicAuth(settings.username, settings.password.get_secret_value())


class PrometheusSource:
    """Instant queries to one Prometheus server; use it with ``async with``."""

    def __init__(
        self,
        settings: PrometheusSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if settings.url is None:
            raise ValueError("prometheus.url is not set")
        self._settings = settings
        self.where = where(settings)
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._http = httpx.AsyncClient(
            base_url=settings.url.rstrip("/"),
            headers={**_HEADERS, **_auth(settings)},
            auth=_basic(settings),
            timeout=settings.query_timeout_seconds,
            follow_redirects=False,
            transport=transport,
            # Every connection kept alive: one closed after each use (httpx keeps 20 by
            # default) is opened again by the next query, at a cost of its own.
            limits=httpx.Limits(
                max_connections=settings.max_in_flight,
                max_keepalive_connections=settings.max_in_flight,
            ),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    async def query(self, promql: str, *, at: datetime) -> Answer:
        """The answer to ``promql`` at ``at``; :class:`SourceUnavailable` saying why not.

        The deadline covers the wait for a free slot too: a query that cannot
        start in time fails like one that cannot finish.
        """
        seconds = self._settings.query_timeout_seconds
        form = {"query": promql, "time": f"{at.timestamp():.3f}"}
        try:
            async with deadline(seconds, "the query"), self._slots:
                body = await self._post(form)
        except (DeadlineExceeded, TooLarge) as exc:
            raise SourceUnavailable(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        return decode(body, max_series=self._settings.max_series)

    async def _post(self, form: dict[str, str]) -> bytes:
        async with self._http.stream("POST", QUERY_PATH, data=form) as response:
            _refuse_unusable(response)
            return await read_bounded(
                response.aiter_raw(),
                self._settings.max_answer_bytes,
                declared=response.headers.get("content-length"),
            )


def _refuse_unusable(response: httpx.Response) -> None:
    """Raise for an answer that cannot be Prometheus' JSON: a redirect, HTML, a gzip body."""
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location", "")[:200]
        raise SourceUnavailable(f"a redirect ({status}) to {location!r}, not followed")
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise SourceUnavailable(f"status {status} with content type {kind[:80]!r}, not JSON")
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        raise SourceUnavailable("a compressed answer, though identity was asked for")
    # 4xx and 5xx with JSON are Prometheus' own errors: decode() reads the reason.


def check_syntax(settings: PrometheusSettings, promql: str) -> str | None:
    """Why the server refuses to parse ``promql``, or None when it parses.

    :class:`SourceUnavailable` when the server gives no usable answer at all.
    Bounded like a query: one deadline over the exchange, the answer's size.
    """
    if settings.url is None:
        raise ValueError("prometheus.url is not set")
    with httpx.Client(
        base_url=settings.url.rstrip("/"),
        headers={**_HEADERS, **_auth(settings)},
        auth=_basic(settings),
        timeout=settings.query_timeout_seconds,
        follow_redirects=False,
    ) as client:
        status, body = _post_sync(client, settings, PARSE_PATH, {"query": promql})
        if status == httpx.codes.NOT_FOUND:  # before 2.31: run it where there is no data
            status, body = _post_sync(client, settings, QUERY_PATH, {"query": promql, "time": "1"})
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise SourceUnavailable("the answer is not JSON") from None
    if isinstance(document, dict) and document.get("status") == "success":
        return None
    error = document.get("error") if isinstance(document, dict) else None
    return str(error)[:500] if error else f"refused with status {status}"


def _post_sync(
    client: httpx.Client, settings: PrometheusSettings, path: str, form: dict[str, str]
) -> tuple[int, bytes]:
    seconds = settings.query_timeout_seconds
    try:
        with client.stream("POST", path, data=form) as response:
            if response.status_code == httpx.codes.NOT_FOUND:
                return response.status_code, b""
            _refuse_unusable(response)
            chunks = within(response.iter_raw(), seconds, "the syntax check")
            declared = response.headers.get("content-length")
            body = read_bounded_sync(chunks, settings.max_answer_bytes, declared=declared)
            return response.status_code, body
    except (DeadlineExceeded, TooLarge) as exc:
        raise SourceUnavailable(str(exc)) from exc
    except httpx.HTTPError as exc:
        raise SourceUnavailable(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
