"""Send an operator command and wait for the controller's verdict on it.

The decisions topic is read from its current end *before* the command is
produced, so the decision cannot slip past: every command the controller
reads ends in a decision carrying its ``command_id``, ``applied`` or
``rejected`` with the reason. ``follow`` streams the decisions and alerts
topics for ``rolloutctl watch``.

Each message is read into a :class:`Decision` or an :class:`Alert` as it
arrives, kept beside the object as published (``--json`` prints that, as it
was); a message that breaks the contract is skipped, as one that is not JSON.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import NamedTuple, TypeVar

import orjson

from controller.adapters.kafka import TopicReader
from controller.core.wire import Alert, Decision, JsonObject, decision_or_alert
from controller.settings import KafkaSettings

Sender = Callable[[], Awaitable[tuple[int, int]]]
CLIENT_ID = "rolloutctl"
REPLAY_MAX = 100_000
"""At most this many messages already on the topics are replayed in time order."""


M = TypeVar("M", bound=Mapping[str, object])
"""A message as read: its JSON object."""


class Received(NamedTuple):
    """A decision or alert read from its topic, and the object as it was published."""

    message: Decision | Alert
    published: JsonObject


class Answered(NamedTuple):
    """The decision on a command, and the object as it was published."""

    decision: Decision
    published: JsonObject


async def send_and_await(
    command_id: str,
    *,
    send: Sender,
    kafka: KafkaSettings,
    decisions: str,
    timeout_s: float,
) -> Answered | None:
    """Run ``send`` (which produces the command ``command_id``, encoded once, as it was
    signed) and return the decision on it; None if none came in time."""
    reader = TopicReader(
        kafka, [decisions], from_end=True, client_id=CLIENT_ID, timeout_s=timeout_s
    )
    async with reader:
        await send()
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            for message in await _poll(reader, min(left, 0.5)):
                decision = decision_or_alert(message)
                if isinstance(decision, Decision) and decision.command_id == command_id:
                    return Answered(decision, message)
    return None


async def follow(
    kafka: KafkaSettings,
    topics: list[str],
    *,
    from_beginning: bool,
    stop: asyncio.Event,
) -> AsyncGenerator[Received]:
    """Every message on ``topics`` from now (or the beginning) until ``stop`` is set.

    Each topic's partitions are read side by side, so a batch may hold a rollback's
    alert before the decision it follows: each batch is put in time order, and
    what is already on the topics (``from_beginning``, up to :data:`REPLAY_MAX`
    messages) is read to its end first and replayed as one batch.
    """
    reader = TopicReader(
        kafka, topics, from_end=not from_beginning, client_id=CLIENT_ID, timeout_s=30
    )
    async with reader:
        if from_beginning:
            values, _ = await reader.until_end(
                key=None, max_records=REPLAY_MAX, max_kept=REPLAY_MAX, timeout_s=30
            )
            for received in _read(in_time_order(_decode(values))):
                yield received
        while not stop.is_set():
            for received in _read(in_time_order(await _poll(reader, 0.5))):
                yield received


def in_time_order(messages: list[M]) -> list[M]:
    """By timestamp; at the same time a decision before the alert it raised (stable)."""

    def when(message: M) -> tuple[int, int]:
        ts = message.get("ts")
        at = ts if isinstance(ts, int) and not isinstance(ts, bool) else 0
        return at, 1 if message.get("type") == "alert" else 0

    return sorted(messages, key=when)


def _read(messages: list[JsonObject]) -> list[Received]:
    read = ((decision_or_alert(message), message) for message in messages)
    return [Received(typed, message) for typed, message in read if typed is not None]


async def _poll(reader: TopicReader, seconds: float) -> list[JsonObject]:
    return _decode(await reader.values(seconds))


def _decode(values: list[bytes] | list[bytes | None]) -> list[JsonObject]:
    out = []
    for value in values:
        try:
            message = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            continue  # not ours to judge: the topic's producers are the controller
        if isinstance(message, dict):
            out.append(message)
    return out
