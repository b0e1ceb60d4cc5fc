"""The intake sends what it does not know as sent, names known duplicates, refuses changed ids."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, cast

import orjson
import pytest

from controller.adapters.http.event_intake import BatchNotSent, ChangedEvents
from controller.adapters.kafka import OutRecord, Producer
from controller.adapters.redis.ledger import EventLedger
from controller.core.common.errors import BrokerError, StoreError
from controller.core.wire.decoding import InEvent, Rejection, decode_event
from controller.daemon.metrics import Metrics
from controller.daemon.serving.event_intake import EventIntake, content_digest


class Ledger:
    """An in-memory :class:`EventLedger`: event id -> content digest."""

    def __init__(self) -> None:
        self.sent: dict[str, str] = {}
        self.fail_recall = self.fail_remember = False

    async def recall(self, event_ids: Sequence[str]) -> dict[str, str]:
        if self.fail_recall:
            raise StoreError("redis is away")
        return {i: self.sent[i] for i in event_ids if i in self.sent}

    async def remember(self, hashes: Mapping[str, str], *, ttl_s: int) -> None:
        if self.fail_remember:
            raise StoreError("redis is away")
        for event_id, digest in hashes.items():
            self.sent.setdefault(event_id, digest)


class Broker:
    def __init__(self) -> None:
        self.records: list[OutRecord] = []
        self.down = False

    async def send_all(self, records: Sequence[OutRecord]) -> None:
        if self.down:
            raise BrokerError("no broker")
        self.records.extend(records)


def wire(i: int, **changes: Any) -> dict[str, Any]:
    return {
        "type": "exposure",
        "v": 1,
        "id": f"id-{i}",
        "ts": 1,
        "flag": "f",
        "unit": f"u{i}",
        "arm": "control",
        "flag_version": 1,
        **changes,
    }


def decoded(raw: bytes) -> tuple[InEvent, bytes]:
    event = decode_event(raw, max_bytes=65536)
    assert not isinstance(event, Rejection)
    return event, raw


def batch(n: int, start: int = 0, **changes: Any) -> list[tuple[InEvent, bytes]]:
    return [decoded(orjson.dumps(wire(i, **changes))) for i in range(start, start + n)]


def intake(ledger: Ledger, broker: Broker) -> EventIntake:
    return EventIntake(
        producer=cast("Producer", broker),
        ledger=cast("EventLedger", ledger),
        topic="events",
        dedupe_seconds=60,
        metrics=Metrics(),
    )


async def test_events_are_sent_keyed_by_unit_and_a_retry_names_them_and_sends_nothing() -> None:
    ledger, broker = Ledger(), Broker()
    events = batch(3)
    first = await intake(ledger, broker).send("c", events)
    again = await intake(ledger, broker).send("c", events[::-1])
    assert (first.sent, first.duplicates, first.duplicate) == (3, (), False)
    assert (again.sent, again.duplicates, again.duplicate) == (0, ("id-0", "id-1", "id-2"), True)
    assert [(r.key, r.value) for r in broker.records] == [
        (e.unit.encode(), raw) for e, raw in events
    ]


async def test_a_rebatch_sends_only_the_new_event_and_names_the_25_sent_before() -> None:
    ledger, broker = Ledger(), Broker()
    await intake(ledger, broker).send("c", batch(25))
    rebatched = await intake(ledger, broker).send("c", batch(26))
    assert (rebatched.events, rebatched.sent) == (26, 1)
    assert rebatched.duplicates == tuple(sorted(f"id-{i}" for i in range(25)))
    assert len(broker.records) == 26


async def test_an_id_sent_before_with_other_content_refuses_the_batch_naming_it() -> None:
    ledger, broker = Ledger(), Broker()
    await intake(ledger, broker).send("c", batch(2))
    changed = [*batch(1, arm="treatment"), *batch(1, start=1), *batch(1, start=2)]
    with pytest.raises(ChangedEvents) as refused:
        await intake(ledger, broker).send("c", changed)
    assert refused.value.ids == ["id-0"]
    assert len(broker.records) == 2  # nothing of the refused batch, not even the new id-2


async def test_a_failed_send_records_nothing_so_the_retry_is_sent() -> None:
    ledger, broker = Ledger(), Broker()
    broker.down = True
    with pytest.raises(BatchNotSent, match="did not acknowledge"):
        await intake(ledger, broker).send("c", batch(2))
    assert ledger.sent == {}
    broker.down = False
    assert (await intake(ledger, broker).send("c", batch(2))).sent == 2
    assert len(broker.records) == 2


async def test_redis_away_before_sending_is_unavailable_and_sends_nothing() -> None:
    ledger, broker = Ledger(), Broker()
    ledger.fail_recall = True
    with pytest.raises(BatchNotSent, match="did not answer"):
        await intake(ledger, broker).send("c", batch(2))
    assert broker.records == []


async def test_an_acknowledged_batch_is_accepted_even_when_recording_it_fails() -> None:
    """Unrecorded, its retry is sent again: the flush counts each id once (tests/integration)."""
    ledger, broker = Ledger(), Broker()
    ledger.fail_remember = True
    accepted = await intake(ledger, broker).send("c", batch(2))
    assert (accepted.events, accepted.sent, accepted.duplicate) == (2, 2, False)


@pytest.mark.parametrize(
    ("other", "same"),
    [
        (
            b'{"flag_version":1,"arm":"control","unit":"u0","flag":"f","ts":1,"id":"id-0","v":1,'
            b'"type":"exposure"}',
            True,
        ),  # keys in another order
        (
            b'{ "type": "exposure", "v": 1, "id": "id-0", "ts": 1, "flag": "f", "unit": "u0",'
            b' "arm": "control", "flag_version": 1 }',
            True,
        ),  # other whitespace
        (orjson.dumps(wire(0, ts=2)), False),
        (orjson.dumps(wire(0, unit="u1")), False),
        (orjson.dumps(wire(0, type="conversion")), False),
        (orjson.dumps(wire(0, type="conversion", value=1.5)), False),
    ],
)
def test_the_content_digest_is_what_an_event_says_not_how(other: bytes, same: bool) -> None:
    first, _ = decoded(orjson.dumps(wire(0)))
    second, _ = decoded(other)
    assert (content_digest(first) == content_digest(second)) is same


def test_an_optional_field_left_out_or_null_digests_as_the_event_without_it() -> None:
    # An optional field a release adds (a request's failure name) changes no digest of an
    # event that does not carry it: a batch accepted before an upgrade and retried after
    # it is the same content, not a changed one
    plain = {**wire(0, type="request"), "error": True}
    digest = content_digest(decoded(orjson.dumps(plain))[0])
    for extra in ({"failure": None}, {"cohort": None}, {"latency_ms": None}):
        assert content_digest(decoded(orjson.dumps({**plain, **extra}))[0]) == digest, extra
    assert digest == hashlib.sha256(orjson.dumps(_in_wire_order(plain))).hexdigest()[:32]
    named = content_digest(decoded(orjson.dumps({**plain, "failure": "5xx GET /cart"}))[0])
    assert named != digest


def _in_wire_order(event: dict[str, Any]) -> dict[str, Any]:
    order = ("type", "v", "id", "ts", "flag", "unit", "arm", "flag_version", "error")
    return {key: event[key] for key in order}
