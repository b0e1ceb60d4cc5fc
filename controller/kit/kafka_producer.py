"""The one Kafka producer every writer of the project starts from: acks=all, idempotent
where the broker grants producer ids.

Shared by the daemon's producers (:mod:`controller.adapters.kafka.producer`:
outputs, dead letters, alerts, the HTTP intake, ``rolloutctl``'s sends) and
the app SDK's (:mod:`controller.sdk.transport`), and shipped in the SDK's own
distribution. Idempotence lets Kafka drop the copies that the client's own
retries would otherwise write (a request answered by the broker whose answer
was lost). :meth:`KafkaProducer.start` asks the broker for a producer id once;
a broker that refuses (an old Kafka, one whose operator denies it, the
embedded tansu) gets a plain producer, and one warning line says so.

aiokafka retries an idempotent producer's batch until the broker takes it: it
never gives a batch up after ``request_timeout_ms`` as it does for a plain
producer, and its ``stop()`` waits for every batch. :meth:`KafkaProducer.stop`
and :meth:`KafkaProducer.abandon` therefore close without waiting: what the
broker has not acknowledged is failed, never sent later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError

from controller.core.common import BrokerError
from controller.kit.kafka_client import ClientLifecycle

log = logging.getLogger("controller.kafka.producer")

_SENDER_LOG = logging.getLogger("aiokafka.producer.sender")


class _ProducerIdRefusal(logging.Filter):
    """Drops aiokafka's error line for a refused producer id: :class:`KafkaProducer` says
    once, in its own words, what the refusal means."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unexpected error during InitProducerIdRequest")


@contextmanager
def _producer_id_refusal_unlogged() -> Iterator[None]:
    refusal = _ProducerIdRefusal()
    _SENDER_LOG.addFilter(refusal)
    try:
        yield
    finally:
        _SENDER_LOG.removeFilter(refusal)


class KafkaProducer(ClientLifecycle):
    """An aiokafka producer with ``acks=all``, idempotent unless the broker refuses it.

    ``options`` are aiokafka's (``acks`` and ``enable_idempotence`` are this class's);
    ``idempotent=False`` skips the question (the broker already refused it).
    ``consequence`` ends the warning a refusal logs: what goes without it;
    ``refusal_level`` is that line's level (a one-off send whose copies the reader
    drops by id need not warn).
    """

    _log = log
    consequence = "a send that aiokafka retries may write a record twice"

    def __init__(
        self,
        options: Mapping[str, Any],
        *,
        bootstrap: str,
        idempotent: bool = True,
        refusal_level: int = logging.WARNING,
    ) -> None:
        self._options = {**options, "acks": "all"}
        self._refusal_level = refusal_level
        self._bootstrap = bootstrap
        self.idempotent = idempotent
        self._client = self._new_client()

    @property
    def client(self) -> AIOKafkaProducer:
        return self._client

    def _new_client(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(**self._options, enable_idempotence=self.idempotent)

    async def start(self) -> None:
        """Connect; :class:`BrokerError` if the broker cannot be reached (nothing left open)."""
        try:
            with _producer_id_refusal_unlogged():
                await super().start()
        except BrokerError as exc:
            if exc.retriable or not self.idempotent:
                raise
            self._log.log(
                self._refusal_level,
                "idempotent_producer_unsupported: the broker at %s has no idempotent producer "
                "(it refused a producer id: %s); records go without it, so %s",
                self._bootstrap,
                exc,
                self.consequence,
            )
            self.idempotent = False
            self._client = self._new_client()
            await super().start()

    async def stop(self) -> None:
        """Close now; what the broker has not acknowledged fails (see :meth:`abandon`)."""
        if self._started:
            self._started = False
            await abandon(self.client)


async def abandon(producer: AIOKafkaProducer) -> None:
    """Close ``producer`` without waiting for its batches: each unacknowledged one fails.

    The sender task is cancelled first, so no batch goes out afterwards; a
    request already on the wire ends within ``request_timeout_ms`` (the broker
    may have written it, as with any timed-out request). Reaches into aiokafka
    (``_sender``, ``_message_accumulator``): it offers no close that gives up.
    """
    sender = getattr(producer, "_sender", None)
    task = None if sender is None else sender.sender_task
    if task is not None and not task.done():
        task.cancel()
        await asyncio.wait([task])
    producer._message_accumulator.fail_all(KafkaTimeoutError("the producer was closed"))
    await producer.stop()
