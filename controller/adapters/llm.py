"""The advisor client: one OpenAI-compatible chat completion per gate, bounded.

Works with LocalAI, Ollama (``/v1``) and the llama.cpp server. Bounded in
time and size whatever the server does:

* each attempt has a deadline of ``timeout_seconds`` for the whole exchange
  (connect, request, every byte of the reply), and ``retries`` more attempts
  follow a failure; httpx's own timeouts apply per socket operation, so a
  server dripping one byte at a time would never trip them on its own;
* the whole consultation, retries included, has a deadline of
  ``budget_seconds`` (by default the attempts' deadlines added up);
* the reply is read as a stream and abandoned past :data:`MAX_REPLY_BYTES`,
  uncompressed only, so no body, however large, is held in memory;
* a circuit breaker fails fast for ``breaker_cooldown_seconds`` after
  ``breaker_failures`` failed consultations in a row.

No error escapes: every failure becomes :class:`Unavailable` with its cause,
which names the server and its setting (``llm.base_url``), and the gate
proceeds on the statistics. A server that does not answer at start is logged
as a warning naming the same setting.

How the reply is constrained differs between servers: the OpenAI form
(``json_schema``), llama-cpp-python's (``json_object`` with a schema) and
LocalAI's grammar. With ``response_format: auto`` (the default) the OpenAI
form is sent first, and when the server refuses it with an error that names
the response format, ``json_object`` with the schema; what the server
accepted is remembered for it (by base URL) for the life of the process. The
advisor and ``rolloutctl plan draft`` share this detection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Self

import httpx
import orjson
import structlog

from controller.core.rollouts import (
    ADVICE_SCHEMA,
    AdvisorResult,
    Briefing,
    Opinion,
    Unavailable,
    build_messages,
    parse_advice,
)
from controller.kit.deadlines import TooLarge, deadline, read_bounded
from controller.settings import LlmSettings, mask_url

MAX_REPLY_BYTES = 256 * 1024
"""A chat completion of ``max_tokens`` ≤ 2000 fits many times over."""
PROBE_SECONDS = 5.0
"""The start-up check that the server answers at all waits at most this long."""
DETECTED_ORDER = ("json_schema", "json_object")
"""The forms ``auto`` tries, in order: OpenAI's, then llama-cpp-python's."""
log = structlog.get_logger("controller.llm")
"""Only the daemon logs here (the start-up check): ``rolloutctl`` prints plans on stdout."""


class _Formats:
    """The response format each server accepted, by base URL, for the life of the process."""

    def __init__(self) -> None:
        self._accepted: dict[str, str] = {}

    def to_try(self, settings: LlmSettings) -> tuple[str, ...]:
        if settings.response_format != "auto":
            return (settings.response_format,)
        known = self._accepted.get(settings.base_url)
        return (known,) if known is not None else DETECTED_ORDER

    def accepted(self, settings: LlmSettings, kind: str) -> None:
        if settings.response_format == "auto":
            self._accepted[settings.base_url] = kind

    def forget(self) -> None:
        self._accepted.clear()


FORMATS = _Formats()


def _refuses_format(status: int, body: bytes) -> bool:
    """Whether an error reply says the response format is what the server refused."""
    text = body[:2000].decode(errors="replace").lower()
    return status >= 400 and ("response_format" in text or "json_schema" in text)


def where(settings: LlmSettings) -> str:
    """The server as the operator finds it in the settings."""
    return f"model at {mask_url(settings.base_url)} (setting llm.base_url)"


_GRAMMAR = r"""root ::= "{" ws "\"action\":" ws action "," ws "\"confidence\":" ws number ","
  ws "\"rationale\":" ws string ws "}"
action ::= "\"advance\"" | "\"hold\"" | "\"rollback\""
number ::= ("0" ("." [0-9]+)?) | "1" (".0")?
string ::= "\"" [^"\\]{0,400} "\""
ws ::= [ ]?"""


class Advisor:
    """Asks the model for advice on a gate; never raises, never blocks past its budget.

    ``clock`` (monotonic seconds) times the breaker's cooldown and the reported
    latencies; the deadlines themselves run on the event loop's clock.
    """

    def __init__(
        self,
        settings: LlmSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings, self._clock = settings, clock
        self._http = model_client(settings, transport)
        self._failures = 0
        self._open_until = 0.0
        self._probe: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        return self

    def check_in_background(self) -> None:
        """:meth:`probe` the server off the caller's path, so start-up waits for nothing."""
        if self._probe is None:
            self._probe = asyncio.create_task(self._check(), name="llm-probe")

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self._http.aclose()

    async def _check(self) -> None:
        await self.probe()

    async def probe(self) -> bool:
        """Whether the server lists its models; a warning naming ``llm.base_url`` if not."""
        try:
            async with deadline(PROBE_SECONDS, "the model server's answer"):
                answer = await self._http.get("/models")
            if answer.status_code == httpx.codes.OK:
                return True
            problem = f"HTTP {answer.status_code} on GET /models"
        except (TimeoutError, httpx.HTTPError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        log.warning(
            "model_unreachable",
            setting="llm.base_url",
            base_url=mask_url(self._settings.base_url),
            error=problem[:300],
            consequence="gates proceed on the statistics until it answers",
        )
        return False

    async def advise(self, briefing: Briefing) -> AdvisorResult:
        """Advice on one gate, or why there is none, within ``budget_seconds``."""
        now = self._clock()
        if now < self._open_until:
            left = self._open_until - now
            return Unavailable(f"{where(self._settings)}: circuit open for {left:.0f} s more")
        started = self._clock()
        budget = self._settings.budget()
        causes: list[str] = []
        try:
            async with deadline(budget, "the consultation"):
                result = await self._attempts(briefing, started, causes)
        except TimeoutError:
            before = f"; before that: {causes[-1]}" if causes else ""
            result = f"no advice within the {budget:g} s budget{before}"
        except Exception as exc:  # the advisor's contract: it never raises
            result = f"advisor error: {type(exc).__name__}: {exc}"
        if isinstance(result, Opinion):
            self._failures = 0
            return result
        self._failures += 1
        if self._failures >= self._settings.breaker_failures:
            self._open_until = self._clock() + self._settings.breaker_cooldown_seconds
        cause = f"{where(self._settings)}: {result}"
        return Unavailable(cause, (self._clock() - started) * 1000)

    async def _attempts(
        self, briefing: Briefing, started: float, causes: list[str]
    ) -> Opinion | str:
        """The first advice given, or the last cause; ``causes`` collects every failure."""
        for _ in range(self._settings.retries + 1):
            result = await self._attempt(briefing, started)
            if isinstance(result, Opinion):
                return result
            causes.append(result)
        return causes[-1]

    async def _attempt(self, briefing: Briefing, started: float) -> Opinion | str:
        timeout = self._settings.timeout_seconds
        try:
            async with deadline(timeout, "the model's reply"):
                reply = await self._post(briefing)
        except (TimeoutError, httpx.TimeoutException):
            return f"timed out after {timeout:g} s"
        except httpx.HTTPError as exc:
            return f"request failed: {type(exc).__name__}: {exc}"
        if isinstance(reply, str):
            return reply
        status, body = reply
        if status != 200:
            return f"HTTP {status}: {body[:200].decode(errors='replace')}"
        return self._opinion(body, started)

    async def _post(self, briefing: Briefing) -> tuple[int, bytes] | str:
        """The reply's status and body, or why the body was not read."""
        messages = build_messages(briefing)
        return await _constrained_post(
            self._http,
            self._settings,
            messages,
            ADVICE_SCHEMA,
            name="gate_advice",
            grammar=_GRAMMAR,
        )

    def _opinion(self, body: bytes, started: float) -> Opinion | str:
        reply = _content(body)
        if isinstance(reply, str):
            return reply
        content, model = reply
        advice = parse_advice(content)
        if isinstance(advice, str):
            return advice
        return Opinion(
            advice,
            model=model if isinstance(model, str) else self._settings.model,
            latency_ms=(self._clock() - started) * 1000,
        )


async def constrained_completion(
    settings: LlmSettings,
    messages: list[dict[str, str]],
    schema: dict[str, Any],
    *,
    name: str,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str | Unavailable:
    """One chat completion constrained by ``schema``: its text, or why there is none.

    The advisor's bounds, for any JSON reply: one deadline of
    ``settings.budget()`` for the whole exchange, the reply read up to
    :data:`MAX_REPLY_BYTES`, nothing compressed, and no error escapes. The
    text is not validated here: the caller parses it against its own model.
    """
    try:
        async with (
            model_client(settings, transport) as http,
            deadline(settings.budget(), "the model's reply"),
        ):
            reply = await _constrained_post(http, settings, messages, schema, name=name)
    except TimeoutError:
        return Unavailable(f"{where(settings)}: no reply within {settings.budget():g} s")
    except Exception as exc:  # the contract: it never raises
        return Unavailable(f"{where(settings)}: request failed: {type(exc).__name__}: {exc}")
    if isinstance(reply, str):
        return Unavailable(f"{where(settings)}: {reply}")
    status, raw = reply
    if status != 200:
        told = raw[:200].decode(errors="replace")
        return Unavailable(f"{where(settings)}: HTTP {status}: {told}")
    content = _content(raw)
    return Unavailable(content) if isinstance(content, str) else content[0]


async def _constrained_post(
    http: httpx.AsyncClient,
    settings: LlmSettings,
    messages: list[dict[str, str]],
    schema: dict[str, Any],
    *,
    name: str,
    grammar: str | None = None,
) -> tuple[int, bytes] | str:
    """POST the completion in the response format the server takes (see the module's doc)."""
    kinds = FORMATS.to_try(settings)
    reply: tuple[int, bytes] | str = "no response format to try"
    for n, kind in enumerate(kinds, start=1):
        body = _chat_request(settings, messages, schema, name=name, kind=kind, grammar=grammar)
        reply = await _post(http, body)
        if isinstance(reply, str):
            return reply
        status, raw = reply
        if status == httpx.codes.OK:
            FORMATS.accepted(settings, kind)
            return reply
        if n == len(kinds) or not _refuses_format(status, raw):
            return reply
    return reply


def _chat_request(
    settings: LlmSettings,
    messages: list[dict[str, str]],
    schema: dict[str, Any],
    *,
    name: str,
    kind: str,
    grammar: str | None = None,
) -> dict[str, Any]:
    """A chat completion request whose reply the response format ``kind`` constrains.

    With ``grammar``, LocalAI's grammar is sent; without one, the schema itself
    (the llama.cpp server turns it into its grammar).
    """
    body: dict[str, Any] = {
        "model": settings.model,
        "messages": messages,
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
    }
    if kind == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": True},
        }
    elif kind == "json_object":
        body["response_format"] = {"type": "json_object", "schema": schema}
    elif grammar is not None:
        body["grammar"] = grammar
    else:
        body["json_schema"] = schema
    return body


def model_client(
    settings: LlmSettings,
    transport: httpx.AsyncBaseTransport | None,
    *,
    seconds: float | None = None,
) -> httpx.AsyncClient:
    """A client of the model server: its key, no compression, ``seconds`` (else the
    settings' ``timeout_seconds``) per operation."""
    # Compressed replies are refused: a small gzip body can inflate past any bound.
    headers = {"Accept-Encoding": "identity"}
    if settings.api_key is not None:
        headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
    return httpx.AsyncClient(
        base_url=settings.base_url.rstrip("/"),
        headers=headers,
        timeout=httpx.Timeout(settings.timeout_seconds if seconds is None else seconds),
        transport=transport,
    )


async def _post(http: httpx.AsyncClient, request: dict[str, Any]) -> tuple[int, bytes] | str:
    """The reply's status and body, or why the body was not read."""
    async with http.stream("POST", "/chat/completions", json=request) as response:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            return f"invalid reply: compressed ({encoding[:40]}) though identity was asked"
        declared = response.headers.get("content-length")
        try:
            # Raw bytes: nothing is decompressed, so each chunk is at most one socket read.
            body = await read_bounded(response.aiter_raw(), MAX_REPLY_BYTES, declared=declared)
        except TooLarge:
            return f"invalid reply: larger than {MAX_REPLY_BYTES} bytes"
        return response.status_code, body


def _content(body: bytes) -> tuple[str, object] | str:
    """A chat completion's message text and model field, or why the body is not one."""
    try:
        reply = orjson.loads(body)
        content = reply["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return "invalid reply: not an OpenAI chat completion"
    if not isinstance(content, str):
        return "invalid reply: the message content is not text"
    return content, reply.get("model") if isinstance(reply, dict) else None
