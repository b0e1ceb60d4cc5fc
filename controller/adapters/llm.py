"""The advisor client: one OpenAI-compatible chat completion per gate, bounded.

Works with LocalAI, Ollama (``/v1``) and the llama.cpp server. Each call has a
strict timeout and ``retries`` more attempts; a circuit breaker fails fast
for ``breaker_cooldown_seconds`` after ``breaker_failures`` failed calls in a
row. No error escapes: every failure becomes :class:`Unavailable` with its
cause, and the gate proceeds on the statistics.
"""

from __future__ import annotations

import time
from typing import Any, Self

import httpx

from controller.core.advice import (
    ADVICE_SCHEMA,
    AdvisorResult,
    Opinion,
    Unavailable,
    build_messages,
    parse_advice,
)
from controller.settings import LlmSettings

_GRAMMAR = r"""root ::= "{" ws "\"action\":" ws action "," ws "\"confidence\":" ws number ","
  ws "\"rationale\":" ws string ws "}"
action ::= "\"advance\"" | "\"hold\"" | "\"rollback\""
number ::= ("0" ("." [0-9]+)?) | "1" (".0")?
string ::= "\"" [^"\\]{0,400} "\""
ws ::= [ ]?"""


class Advisor:
    """Asks the model for advice on a gate; never raises, never blocks past its budget."""

    def __init__(
        self, settings: LlmSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._settings = settings
        headers = {}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self._http = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_seconds),
            transport=transport,
        )
        self._failures = 0
        self._open_until = 0.0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def advise(self, gate_data: dict[str, Any]) -> AdvisorResult:
        """Advice on one gate, or why there is none."""
        now = time.monotonic()
        if now < self._open_until:
            return Unavailable(f"circuit open for {self._open_until - now:.0f} s more")
        started = time.perf_counter()
        cause = "no attempt made"
        for _ in range(self._settings.retries + 1):
            result = await self._attempt(gate_data, started)
            if isinstance(result, Opinion):
                self._failures = 0
                return result
            cause = result
        self._failures += 1
        if self._failures >= self._settings.breaker_failures:
            self._open_until = time.monotonic() + self._settings.breaker_cooldown_seconds
        return Unavailable(cause, (time.perf_counter() - started) * 1000)

    async def _attempt(self, gate_data: dict[str, Any], started: float) -> Opinion | str:
        try:
            response = await self._http.post("/chat/completions", json=self._request(gate_data))
        except httpx.TimeoutException:
            return f"timed out after {self._settings.timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            return f"request failed: {type(exc).__name__}: {str(exc)[:200]}"
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {response.text[:200]}"
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return "invalid reply: not an OpenAI chat completion"
        advice = parse_advice(str(content))
        if isinstance(advice, str):
            return advice
        latency = (time.perf_counter() - started) * 1000
        return Opinion(
            advice,
            model=str(response.json().get("model", self._settings.model)),
            latency_ms=latency,
        )

    def _request(self, gate_data: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._settings.model,
            "messages": build_messages(gate_data),
            "temperature": self._settings.temperature,
            "max_tokens": self._settings.max_tokens,
        }
        kind = self._settings.response_format
        if kind == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "gate_advice", "schema": ADVICE_SCHEMA, "strict": True},
            }
        elif kind == "json_object":
            body["response_format"] = {"type": "json_object", "schema": ADVICE_SCHEMA}
        else:
            body["grammar"] = _GRAMMAR
        return body
