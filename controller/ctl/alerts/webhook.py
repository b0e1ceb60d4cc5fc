"""Posting alerts to a Slack-compatible incoming webhook, retrying what may succeed later."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import structlog

from controller.adapters.http_client import JsonPoster, Unreachable
from controller.integrations.slack import classify_status, mask_webhook, retry_after_seconds
from controller.kit.backoff import Backoff, sleep_or_stop

MAX_RETRY_AFTER_S = 600.0
"""A longer ``Retry-After`` is cut to this, so a wrong header cannot park alerts for days."""

log = structlog.get_logger("controller.ctl.alerts.alerts")


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one alert's POST ended: delivered, refused (permanent) or abandoned (stopping)."""

    outcome: Literal["delivered", "refused", "abandoned"]
    status: int | None
    attempts: int
    reason: str = ""


class Webhook:
    """POSTs payloads to the incoming webhook, retrying what may succeed later."""

    def __init__(
        self, *, client: JsonPoster, url: str, stopping: asyncio.Event, backoff: Backoff
    ) -> None:
        self._client = client
        self._url = url
        self._stopping = stopping
        self._backoff = backoff

    async def post(self, payload: dict[str, Any]) -> Delivery:
        """POST until 2xx or a permanent refusal; ``abandoned`` once stopping is asked."""
        self._backoff.reset()
        attempts = 0
        while True:
            attempts += 1
            status, retry_after, reason = await self._attempt(orjson.dumps(payload))
            verdict = "retry" if status is None else classify_status(status)
            if verdict != "retry":
                return Delivery(verdict, status, attempts, reason if verdict == "refused" else "")
            delay = self._backoff.delay if retry_after is None else retry_after
            log.warning(
                "webhook_retrying", status=status, reason=reason, attempts=attempts, delay_s=delay
            )
            if await self._wait(retry_after):
                return Delivery("abandoned", status, attempts, reason)

    async def _attempt(self, body: bytes) -> tuple[int | None, float | None, str]:
        """One POST: its status (None if no answer came), Retry-After and the reason."""
        try:
            answer = await self._client.post(self._url, body)
        except Unreachable as exc:
            # Never echo the URL: its path is the webhook's secret.
            return None, None, str(exc).replace(self._url, mask_webhook(self._url))[:300]
        retry_after = retry_after_seconds(answer.headers.get("Retry-After"))
        return answer.status, retry_after, answer.text.strip()[:300]

    async def _wait(self, retry_after: float | None) -> bool:
        if retry_after is None:
            return await self._backoff.wait()
        return await sleep_or_stop(min(retry_after, MAX_RETRY_AFTER_S), self._stopping)
