"""Events sent over HTTP into the events topic, and what the answer says was sent before.

Counting each event once is ingest's work, not the intake's: the flush
records the ids it counted per partition and skips an id it counted within
``ingest.dedupe_seconds`` (docs/architecture.md, "Event ids"), whichever way
a copy reached the topic (a retry after an answer lost to a crash, a
re-batch, a producer's own retry). The intake adds what it can know at
acceptance, from a best-effort record of the events it sent
(:class:`~controller.adapters.redis.ledger.EventLedger`, kept
``http.intake_dedupe_seconds``):

* an event whose id was sent before with the same content is a known
  duplicate: named in the answer's ``duplicates`` and not sent again;
* an event whose id was sent before with other content refuses the batch
  (:class:`ChangedEvents`, a 409 naming the ids): an id names one event, and
  the flush would keep the first copy and drop this one silently;
* the rest is sent, keyed by unit, and recorded once the broker acknowledged
  it. A crash between the acknowledgement and the record, or two attempts of
  one batch at once, leave copies that are sent again; the flush drops them.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from contextlib import AsyncExitStack

import msgspec

from controller.adapters.http import Accepted, BatchNotSent, ChangedEvents
from controller.adapters.kafka import OutRecord, Producer
from controller.adapters.redis import EventLedger, connect
from controller.core.common import ControllerError
from controller.core.wire import InEvent
from controller.daemon.metrics import Metrics
from controller.settings import Settings

_encoder = msgspec.json.Encoder()
DIGEST_SLICE = 512
"""Events digested between two turns of the event loop."""


class EventIntake:
    """Sends validated batches to the events topic, keyed by unit; names the known duplicates."""

    def __init__(
        self,
        *,
        producer: Producer,
        ledger: EventLedger,
        topic: str,
        dedupe_seconds: int,
        metrics: Metrics,
    ) -> None:
        self._producer, self._ledger, self._topic = producer, ledger, topic
        self._ttl, self._metrics = dedupe_seconds, metrics

    async def send(self, client: str, events: Sequence[tuple[InEvent, bytes]]) -> Accepted:
        """Send the events not known as sent; :class:`BatchNotSent` when nothing can be now."""
        digests = await _digests(events)
        try:
            known = await self._ledger.recall(list(digests))
        except ControllerError as exc:
            raise BatchNotSent(f"the record of sent events (Redis) did not answer: {exc}") from exc
        changed = sorted(i for i, digest in known.items() if digest != digests[i])
        if changed:
            raise ChangedEvents(changed)
        fresh = [(event, raw) for event, raw in events if event.id not in known]
        unrecorded = False
        if fresh:
            records = [OutRecord(self._topic, e.unit.encode(), raw) for e, raw in fresh]
            try:
                await self._producer.send_all(records)
            except ControllerError as exc:
                raise BatchNotSent(f"the broker did not acknowledge the batch: {exc}") from exc
            try:
                await self._ledger.remember(
                    {e.id: digests[e.id] for e, _ in fresh}, ttl_s=self._ttl
                )
            except ControllerError:
                # Sent and acknowledged: the answer is 202. Unrecorded, a retry is
                # sent again and the flush drops the copies.
                self._metrics.intake_batches.labels("unrecorded").inc()
                unrecorded = True
        return Accepted(len(events), duplicates=tuple(sorted(known)), unrecorded=unrecorded)

    def count(self, outcome: str, events: int) -> None:
        """Count one request by what became of it, and the events it sent."""
        count_request(self._metrics, outcome, events)


def count_request(metrics: Metrics, outcome: str, events: int) -> None:
    """Count one request of an intake by what became of it, and the events it sent."""
    metrics.intake_batches.labels(outcome).inc()
    if events:
        metrics.intake_events.inc(events)


async def opened_intake(stack: AsyncExitStack, settings: Settings, metrics: Metrics) -> EventIntake:
    """An :class:`EventIntake` for ``settings``, its Redis client and producer opened on the
    running loop and entered in ``stack``, which closes them; the producer's timeout keeps a
    batch answered 503 from being sent later."""
    client = await stack.enter_async_context(connect(settings.redis))
    ack_timeout = settings.http.intake_ack_timeout_seconds
    producer = Producer(kafka=settings.kafka, request_timeout_ms=int(ack_timeout * 1000))
    return EventIntake(
        producer=await stack.enter_async_context(producer),
        ledger=EventLedger(client, settings=settings.redis),
        topic=settings.topics.events,
        dedupe_seconds=settings.http.intake_dedupe_seconds,
        metrics=metrics,
    )


async def _digests(events: Sequence[tuple[InEvent, bytes]]) -> dict[str, str]:
    """Each event's :func:`content_digest` by id, :data:`DIGEST_SLICE` between two turns of
    the event loop (an export of thousands of spans makes thousands of events)."""
    digests = {}
    for i, (event, _) in enumerate(events, 1):
        digests[event.id] = content_digest(event)
        if i % DIGEST_SLICE == 0:
            await asyncio.sleep(0)
    return digests


def content_digest(event: InEvent) -> str:
    """What an event says, as 32 hex digits: the same for the same fields, in any order or form.

    The decoded event is encoded again, so the same event sent with its keys
    in another order or other whitespace has the same content.
    """
    return hashlib.sha256(_encoder.encode(event)).hexdigest()[:32]
