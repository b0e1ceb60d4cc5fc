"""Events sent over HTTP into the events topic, each batch once, however often it is retried.

Ingest counts every event it reads and does not remove repeated event ids
(a property of the stream, see docs/architecture.md), so a batch that a client
sends again after an answer it never got must not reach the topic twice. The
intake removes those duplicates where it can see them, at the edge:

* a batch's id is the SHA-256 of its events' ids, sorted: the same events
  make the same batch whatever their order, and events carry ids (the SDK
  gives each a unique one), so a client retries by sending the same batch;
* the batch is begun in Redis (``SET NX``, pending for about the time a send
  may take), then sent, and marked done once the broker acknowledged every
  event, for ``http.intake_dedupe_seconds``;
* a retry that finds the batch done is answered 202 ``duplicate`` and sends
  nothing; one that finds it pending (the first attempt is still being sent)
  is answered 503 with ``Retry-After``, so it comes back once that attempt
  is decided;
* a send that fails abandons the batch (deletes the pending mark it set), so
  the retry sends it: nothing the broker did not acknowledge is remembered.

Redis outlives the controller, so a retry after a restart is recognised too.
Two windows remain, both documented: a crash between the broker's
acknowledgement and the done mark (the pending mark expires and a retry is
sent again), and a send whose acknowledgement was lost on the way back while
the broker kept the events. The intake's producer waits for a definite
answer (its request timeout bounds how long a batch may wait unsent), so a
batch answered 503 is not sent later behind the client's back.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence

from controller.adapters.event_intake import Accepted, BatchNotSent
from controller.adapters.kafka import OutRecord, Producer
from controller.adapters.redis.ledger import BatchLedger, Begun
from controller.core.decoding import InEvent
from controller.core.errors import ControllerError
from controller.daemon.metrics import Metrics

PENDING_MARGIN_SECONDS = 5


class EventIntake:
    """Sends validated batches to the events topic, keyed by unit, once per batch id."""

    def __init__(
        self,
        *,
        producer: Producer,
        ledger: BatchLedger,
        topic: str,
        dedupe_seconds: int,
        ack_timeout_seconds: float,
        metrics: Metrics,
    ) -> None:
        self._producer, self._ledger, self._topic = producer, ledger, topic
        self._ttl, self._metrics = dedupe_seconds, metrics
        self._pending_ttl = int(ack_timeout_seconds * 2) + PENDING_MARGIN_SECONDS

    async def send(self, client: str, events: Sequence[tuple[InEvent, bytes]]) -> Accepted:
        """Send ``events`` unless this batch was sent; :class:`BatchNotSent` when not sent now."""
        batch_id = batch_id_of([event.id for event, _ in events])
        try:
            begun, token = await self._ledger.begin(batch_id, pending_ttl_s=self._pending_ttl)
        except ControllerError as exc:
            raise BatchNotSent(f"the retry ledger (Redis) did not answer: {exc}") from exc
        if begun is Begun.DONE:
            return Accepted(len(events), duplicate=True)
        if begun is Begun.PENDING:
            raise BatchNotSent("this batch is being sent by an earlier attempt")
        records = [OutRecord(self._topic, event.unit.encode(), raw) for event, raw in events]
        try:
            await self._producer.send_all(records)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await self._ledger.abandon(batch_id, token)
            if isinstance(exc, ControllerError):
                raise BatchNotSent(f"the broker did not acknowledge the batch: {exc}") from exc
            raise
        try:
            await self._ledger.done(batch_id, ttl_s=self._ttl)
        except ControllerError:
            # Sent and acknowledged: the answer is 202. Unmarked, the pending
            # mark expires and a retry of this batch would be sent again.
            self._metrics.intake_batches.labels("unmarked").inc()
        return Accepted(len(events), duplicate=False)

    def count(self, outcome: str, events: int) -> None:
        """Count one request by what became of it, and the events it sent."""
        self._metrics.intake_batches.labels(outcome).inc()
        if events:
            self._metrics.intake_events.inc(events)


def batch_id_of(event_ids: Sequence[str]) -> str:
    """The id of the batch of these events: the same events, in any order, the same id."""
    digest = hashlib.sha256()
    for event_id in sorted(event_ids):
        digest.update(event_id.encode())
        digest.update(b"\x00")
    return digest.hexdigest()
