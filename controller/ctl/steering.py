"""Send an operator command and wait for the controller's verdict on it.

The decisions topic is read from its current end *before* the command is
produced, so the decision cannot slip past: every command the controller
reads ends in a decision carrying its ``command_id``, ``applied`` or
``rejected`` with the reason. ``follow`` streams the decisions and alerts
topics for ``rolloutctl watch``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import orjson

from controller.adapters.kafka import TopicReader
from controller.settings import KafkaSettings

Sender = Callable[[], Awaitable[tuple[int, int]]]
CLIENT_ID = "rolloutctl"


async def send_and_await(
    command: dict[str, Any],
    *,
    send: Sender,
    kafka: KafkaSettings,
    decisions: str,
    timeout_s: float,
) -> dict[str, Any] | None:
    """Run ``send`` and return the decision on ``command``; None if none came in time."""
    reader = TopicReader(
        kafka, [decisions], from_end=True, client_id=CLIENT_ID, timeout_s=timeout_s
    )
    async with reader:
        await send()
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            for message in await _poll(reader, min(left, 0.5)):
                if message.get("type") == "decision" and message.get("command_id") == command["id"]:
                    return message
    return None


async def follow(
    kafka: KafkaSettings,
    topics: list[str],
    *,
    from_beginning: bool,
    stop: asyncio.Event,
) -> AsyncGenerator[dict[str, Any]]:
    """Every message on ``topics`` from now (or the beginning) until ``stop`` is set."""
    reader = TopicReader(
        kafka, topics, from_end=not from_beginning, client_id=CLIENT_ID, timeout_s=30
    )
    async with reader:
        while not stop.is_set():
            for message in await _poll(reader, 0.5):
                yield message


async def _poll(reader: TopicReader, seconds: float) -> list[dict[str, Any]]:
    out = []
    for value in await reader.values(seconds):
        try:
            message = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            continue  # not ours to judge: the topic's producers are the controller
        if isinstance(message, dict):
            out.append(message)
    return out
