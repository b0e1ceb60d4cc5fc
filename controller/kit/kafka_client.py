"""The one translation of aiokafka's errors, and the lifecycle of every Kafka client.

Shared by the daemon's Kafka adapter (:mod:`controller.adapters.kafka`) and
the app SDK's transport (:mod:`controller.sdk.transport`), and shipped in the
SDK's own distribution. Everything that calls aiokafka does so inside
:func:`translated`, so the rooms above handle
:class:`~controller.core.common.errors.BrokerError` only and never import aiokafka.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiokafka.errors import (
    InvalidSessionTimeoutError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from controller.core.common import BrokerError, BrokerUnavailable, MessageTooLarge
from controller.kit.lifecycle import Lifecycle

BROKER_FAILURES = (KafkaError, OSError)
"""What aiokafka raises when the broker fails or cannot be reached (timeouts are OSErrors)."""


BOOTSTRAP_SETTING = "kafka.bootstrap_servers"
SESSION_TIMEOUT_REFUSED = (
    "the group coordinator refuses the consumer's session timeout (setting "
    "kafka.session_timeout_ms): it must lie within the broker's "
    "group.min.session.timeout.ms and group.max.session.timeout.ms (6000 and 1800000 "
    "by default on Apache Kafka)"
)
_ADDRESS = re.compile(r"\('([^']+)', (\d+)")
"""A (host, port, family) tuple in aiokafka's "Unable to bootstrap from [...]" message."""


def unreachable_sentence(exc: BaseException, bootstrap: str = "") -> str:
    """One sentence for an operator: which brokers, the setting naming them, what to check.

    ``bootstrap`` is the configured broker list; without it the addresses
    aiokafka tried are read from its message.
    """
    text = str(exc)
    where = bootstrap or ",".join(f"{h}:{p}" for h, p in _ADDRESS.findall(text))
    at = f" at {where}" if where else ""
    if isinstance(exc, TimeoutError | KafkaTimeoutError):
        failure = "did not answer in time"
    elif "Unable to bootstrap" in text or not text:
        failure = "does not answer"
    else:
        failure = f"does not answer ({text[:200]})"
    return (
        f"Kafka{at} {failure} (setting {BOOTSTRAP_SETTING}): "
        "check that the brokers run and listen at that host and port"
    )


def translate(exc: BaseException, context: str = "", *, bootstrap: str = "") -> BrokerError:
    """``exc`` as the controller's broker error, its message prefixed with ``context``.

    Its ``retriable`` says whether trying again may succeed. An unreachable
    broker is one sentence naming ``bootstrap`` and its setting.
    """
    prefix = f"{context}: " if context else ""
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError | OSError):
        return BrokerUnavailable(prefix + unreachable_sentence(exc, bootstrap))
    if isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError):
        return MessageTooLarge(f"{prefix}message too large for the broker: {exc}")
    if isinstance(exc, InvalidSessionTimeoutError):
        return BrokerError(prefix + SESSION_TIMEOUT_REFUSED, retriable=False)
    return BrokerError(f"{prefix}broker error: {exc!r}", retriable=getattr(exc, "retriable", False))


METADATA_MAX_AGE_MS = 5_000
"""How old a group consumer's metadata may grow. A topic deleted and made again (by an
operator, or by the daemon after a broker lost its data) leaves the group with no
partition of it until a member's metadata names it again, and nothing else asks while
none is fetched: aiokafka's default, 5 minutes, would leave ingest idle and operators'
commands unread that long. One metadata request every 5 s costs nothing."""


async def topic_partitions(consumer: Any, topic: str) -> set[int] | None:
    """The partitions of ``topic`` from a fresh metadata request; None if it does not exist.

    Not ``partitions_for_topic``: that reads the consumer's cached metadata, and a consumer
    with no subscription caches no topic at all on Apache Kafka, whose answer to aiokafka's
    bootstrap request (an empty topic list) names none. The embedded broker names every topic.
    """
    return (await topics_partitions(consumer, [topic])).get(topic)


async def topics_partitions(consumer: Any, topics: list[str]) -> dict[str, set[int]]:
    """The partitions of each of ``topics`` that exists, from one fresh metadata request
    (see :func:`topic_partitions`)."""
    cluster = await consumer._client.fetch_all_metadata()
    found = {topic: cluster.partitions_for_topic(topic) for topic in topics}
    return {topic: set(partitions) for topic, partitions in found.items() if partitions}


@contextmanager
def translated(context: str = "", *, bootstrap: str = "") -> Iterator[None]:
    """Raise what fails inside as a :class:`BrokerError` (``context`` says what was tried,
    ``bootstrap`` which brokers)."""
    try:
        yield
    except BROKER_FAILURES as exc:
        raise translate(exc, context, bootstrap=bootstrap) from exc


class ClientLifecycle(Lifecycle):
    """An aiokafka client behind ``start()``/``stop()`` (both idempotent) and ``async with``.

    A client that fails to start (or to start within ``_start_timeout_s``) is
    stopped again before the translated error is raised, so no connection is
    left behind.
    """

    _client: Any
    _started = False
    _context = ""
    """What the client is for, prefixed to the message of a failure to start."""
    _start_timeout_s: float | None = None
    _bootstrap = ""
    """The brokers the client was given, named when they cannot be reached."""

    async def start(self) -> None:
        if self._started:
            return
        # The timeout sits inside the translation: its TimeoutError becomes a BrokerError.
        with translated(self._context, bootstrap=self._bootstrap):
            async with asyncio.timeout(self._start_timeout_s):
                await self._start_client()
        self._started = True

    async def _start_client(self) -> None:
        try:
            await self._client.start()
            await self._on_started()
        except BaseException:
            await self._client.stop()
            raise

    async def _on_started(self) -> None:
        """Subscribe or position, for consumers; nothing for producers."""

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._client.stop()
