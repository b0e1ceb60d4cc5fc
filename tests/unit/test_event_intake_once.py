"""The intake sends a batch once: begun, sent, marked done; abandoned when the send fails."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import orjson
import pytest

from controller.adapters.event_intake import BatchNotSent
from controller.adapters.kafka import OutRecord, Producer
from controller.adapters.redis.ledger import BatchLedger, Begun
from controller.core.decoding import InEvent, Rejection, decode_event
from controller.core.errors import BrokerError, StoreError
from controller.daemon.event_intake import EventIntake, batch_id_of
from controller.daemon.metrics import Metrics


class Ledger:
    """An in-memory :class:`BatchLedger`: batch id -> ``done`` or a pending token."""

    def __init__(self) -> None:
        self.marks: dict[str, str] = {}
        self.fail_done = False
        self._tokens = 0

    async def begin(self, batch_id: str, *, pending_ttl_s: int) -> tuple[Begun, str]:
        self._tokens += 1
        token = f"pending:{self._tokens}"
        found = self.marks.setdefault(batch_id, token)
        if found == token:
            return Begun.FRESH, token
        return (Begun.DONE if found == "done" else Begun.PENDING), token

    async def done(self, batch_id: str, *, ttl_s: int) -> None:
        if self.fail_done:
            raise StoreError("redis is away")
        self.marks[batch_id] = "done"

    async def abandon(self, batch_id: str, token: str) -> None:
        if self.marks.get(batch_id) == token:
            del self.marks[batch_id]


class Broker:
    def __init__(self) -> None:
        self.records: list[OutRecord] = []
        self.down = False

    async def send_all(self, records: Sequence[OutRecord]) -> None:
        if self.down:
            raise BrokerError("no broker")
        self.records.extend(records)


def batch(n: int) -> list[tuple[InEvent, bytes]]:
    made = []
    for i in range(n):
        raw = orjson.dumps(
            {
                "type": "exposure",
                "v": 1,
                "id": f"id-{i}",
                "ts": 1,
                "flag": "f",
                "unit": f"u{i}",
                "arm": "control",
                "flag_version": 1,
            }
        )
        event = decode_event(raw, max_bytes=65536)
        assert not isinstance(event, Rejection)
        made.append((event, raw))
    return made


def intake(ledger: Ledger, broker: Broker) -> EventIntake:
    options: dict[str, Any] = {"dedupe_seconds": 60, "ack_timeout_seconds": 1.0}
    return EventIntake(
        producer=cast("Producer", broker),
        ledger=cast("BatchLedger", ledger),
        topic="events",
        metrics=Metrics(),
        **options,
    )


async def test_a_batch_is_sent_keyed_by_unit_once_and_its_retry_is_a_duplicate() -> None:
    ledger, broker = Ledger(), Broker()
    events = batch(3)
    first = await intake(ledger, broker).send("c", events)
    again = await intake(ledger, broker).send("c", events[::-1])
    assert (first.duplicate, again.duplicate) == (False, True)
    assert [(r.key, r.value) for r in broker.records] == [
        (e.unit.encode(), raw) for e, raw in events
    ]


async def test_a_failed_send_is_abandoned_so_the_retry_is_sent() -> None:
    ledger, broker = Ledger(), Broker()
    broker.down = True
    with pytest.raises(BatchNotSent, match="did not acknowledge"):
        await intake(ledger, broker).send("c", batch(2))
    assert ledger.marks == {}
    broker.down = False
    assert not (await intake(ledger, broker).send("c", batch(2))).duplicate
    assert len(broker.records) == 2


async def test_a_batch_being_sent_by_another_attempt_is_unavailable_not_a_duplicate() -> None:
    ledger, broker = Ledger(), Broker()
    ledger.marks[batch_id_of(["id-0", "id-1"])] = "pending:other"
    with pytest.raises(BatchNotSent, match="earlier attempt"):
        await intake(ledger, broker).send("c", batch(2))
    assert broker.records == []


async def test_an_acknowledged_batch_is_accepted_even_when_the_done_mark_fails() -> None:
    ledger, broker = Ledger(), Broker()
    ledger.fail_done = True
    accepted = await intake(ledger, broker).send("c", batch(2))
    assert (accepted.events, accepted.duplicate) == (2, False)


@pytest.mark.parametrize(
    ("ids", "same_as"),
    [(["a", "b"], ["b", "a"]), (["a"], ["a"])],
)
def test_a_batch_id_is_its_event_ids_in_any_order(ids: list[str], same_as: list[str]) -> None:
    assert batch_id_of(ids) == batch_id_of(same_as)
    assert batch_id_of(ids) != batch_id_of([*ids, "c"])
    # ids are separated, so joining two never makes another batch's id
    assert batch_id_of(["ab", "c"]) != batch_id_of(["a", "bc"])
