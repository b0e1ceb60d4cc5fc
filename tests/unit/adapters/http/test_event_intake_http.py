"""``POST /v1/events``: every refusal a 4xx with a reason, every batch validated as ingest does."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from controller.adapters.http.event_intake import (
    OFF_LOOP_BYTES,
    Accepted,
    BatchNotSent,
    ChangedEvents,
    EventIntakeRoutes,
)
from controller.core.wire.decoding import InEvent
from tests.support.app_client import app_client


class Sink:
    """Remembers the events it sent, by id and content; fails while ``down``."""

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []
        self.known: dict[str, bytes] = {}
        self.down = False
        self.outcomes: Counter[str] = Counter()

    async def send(self, client: str, events: Sequence[tuple[InEvent, bytes]]) -> Accepted:
        if self.down:
            raise BatchNotSent("the broker is away")
        changed = [e.id for e, raw in events if self.known.get(e.id, raw) != raw]
        if changed:
            raise ChangedEvents(changed)
        known = tuple(sorted(e.id for e, _ in events if e.id in self.known))
        fresh = [raw for e, raw in events if e.id not in self.known]
        self.known.update((e.id, raw) for e, raw in events)
        if fresh:
            self.sent.append(fresh)
        return Accepted(len(events), duplicates=known)

    def count(self, outcome: str, events: int) -> None:
        self.outcomes[outcome] += 1


def event(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "type": "exposure",
        "v": 1,
        "id": f"e{n}",
        "ts": 1_700_000_000_000,
        "flag": "checkout",
        "unit": f"u{n}",
        "arm": "treatment",
        "flag_version": 1,
        **changes,
    }


@asynccontextmanager
async def served(sink: Sink, **limits: Any) -> AsyncIterator[httpx.AsyncClient]:
    # The daemon's app bounds other bodies to 64 KiB; the intake reads its own bound.
    app = web.Application(client_max_size=64 * 1024)
    options: dict[str, Any] = {
        "max_body_bytes": 256 * 1024,
        "max_events": 500,
        "max_event_bytes": 64 * 1024,
        "events_per_second": 100_000,
        "body_timeout_seconds": 5.0,
    }
    EventIntakeRoutes(sink, **(options | limits)).add_to(app.router)
    async with app_client(app) as client:
        yield client


async def test_a_valid_batch_is_sent_as_sent_and_its_retry_names_every_id_a_duplicate() -> None:
    sink = Sink()
    batch = [event(n) for n in range(500)]
    async with served(sink) as client:
        first = await client.post("/v1/events", json={"events": batch})
        again = await client.post("/v1/events", json={"events": batch[::-1]})
    assert first.status_code == again.status_code == 202
    assert first.json() == {
        "accepted": 500,
        "sent": 500,
        "duplicates": [],
        "duplicate": False,
        "reason": "acknowledged by the broker",
    }
    assert again.json() == {
        "accepted": 500,
        "sent": 0,
        "duplicates": sorted(e["id"] for e in batch),
        "duplicate": True,
        "reason": "every event was accepted before; nothing was sent again",
    }
    assert len(sink.sent) == 1
    assert [orjson.loads(raw) for raw in sink.sent[0]] == batch
    assert sink.outcomes == {"accepted": 1, "duplicate": 1}


async def test_a_rebatch_is_answered_with_the_ids_accepted_before_and_the_new_one_sent() -> None:
    sink = Sink()
    batch = [event(n) for n in range(100)]
    async with served(sink) as client:
        await client.post("/v1/events", json={"events": batch})
        rebatched = await client.post("/v1/events", json={"events": [*batch[:25], event(100)]})
    assert (rebatched.status_code, rebatched.json()["accepted"], rebatched.json()["sent"]) == (
        202,
        26,
        1,
    )
    assert rebatched.json()["duplicates"] == sorted(e["id"] for e in batch[:25])
    assert rebatched.json()["duplicate"] is False
    assert "25 events were accepted before" in rebatched.json()["reason"]
    assert [len(sent) for sent in sink.sent] == [100, 1]


async def test_an_id_accepted_before_with_other_content_is_a_409_naming_it() -> None:
    sink = Sink()
    async with served(sink) as client:
        await client.post("/v1/events", json={"events": [event(0), event(1)]})
        changed = [event(0), event(1, arm="control"), event(2)]
        refused = await client.post("/v1/events", json={"events": changed})
    assert refused.status_code == 409
    assert refused.json()["changed"] == ["e1"]
    assert "give a changed event a new id" in refused.json()["error"]
    assert len(sink.sent) == 1  # nothing of the refused batch
    assert sink.outcomes == {"accepted": 1, "changed": 1}


DEEP = b'{"events": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
DEEP_EVENT = b'{"events": [' + b'{"a":' * 30 + b"1" + b"}" * 30 + b"]}"
"""Within the decoder's own depth: refused by the event's check, which names its index."""


@pytest.mark.parametrize(
    ("body", "status", "outcome", "words"),
    [
        (b"not json", 400, "not_a_batch", "must be"),
        (b"[]", 400, "not_a_batch", "must be"),
        (b'{"events": []}', 400, "empty", "no events"),
        (b'{"events": [], "more": 1}', 400, "not_a_batch", "more"),
        (DEEP, 400, "too_deep", "nested deeper"),
        (b'{"events": [' + b"[" * 5000 + b"]", 400, "too_deep", "nested deeper"),
        (DEEP_EVENT, 400, "invalid", "1 of 1"),
        (orjson.dumps({"events": [event(1), {"type": "nope"}]}), 400, "invalid", "1 of 2"),
        (orjson.dumps({"events": [event(1), event(1)]}), 400, "invalid", "1 of 2"),
        (orjson.dumps({"events": [event(n) for n in range(501)]}), 413, "too_many", "at most 500"),
        (b'{"events": [' + b" " * 300_000 + b"]}", 413, "too_large", "over 262144 bytes"),
    ],
)
async def test_a_hostile_or_invalid_body_is_refused_with_a_reason_and_nothing_sent(
    body: bytes, status: int, outcome: str, words: str
) -> None:
    sink = Sink()
    async with served(sink) as client:
        answer = await client.post(
            "/v1/events", content=body, headers={"Content-Type": "application/json"}
        )
        # the server goes on
        after = await client.post("/v1/events", json={"events": [event(9)]})
    assert answer.status_code == status
    assert words in answer.json()["error"]
    assert sink.outcomes[outcome] == 1
    assert after.status_code == 202
    assert sink.sent == [[orjson.dumps(event(9))]]


async def test_invalid_events_are_named_by_index_with_ingests_reason() -> None:
    sink = Sink()
    batch = [event(0), event(1, arm="blue"), event(2), {"type": "exposure", "v": 2}, event(0)]
    async with served(sink) as client:
        answer = await client.post("/v1/events", json={"events": batch})
    assert answer.status_code == 400
    errors = [(e["index"], e["reason"]) for e in answer.json()["errors"]]
    assert errors == [
        (1, "schema_violation"),
        (3, "unsupported_version"),
        (4, "repeated_id"),
    ]
    assert sink.sent == []


async def test_a_large_batch_checked_on_a_thread_names_its_invalid_events_the_same() -> None:
    sink = Sink()
    batch = [event(n) for n in range(300)]
    batch[7] = event(7, arm="blue")
    assert len(orjson.dumps({"events": batch})) > OFF_LOOP_BYTES
    async with served(sink) as client:
        answer = await client.post("/v1/events", json={"events": batch})
    assert answer.status_code == 400
    assert [(e["index"], e["reason"]) for e in answer.json()["errors"]] == [(7, "schema_violation")]
    assert sink.sent == []


async def test_a_body_that_is_not_json_typed_is_415_and_a_chunked_flood_is_413() -> None:
    sink = Sink()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 4096

    async with served(sink) as client:
        typed = await client.post("/v1/events", content=b"{}", headers={"Content-Type": "text/x"})
        flood = await client.post(
            "/v1/events", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert (typed.status_code, flood.status_code) == (415, 413)
    assert "over 262144 bytes" in flood.json()["error"]


async def test_an_unavailable_broker_is_503_with_retry_after_and_the_retry_is_sent_once() -> None:
    sink = Sink()
    sink.down = True
    async with served(sink) as client:
        refused = await client.post("/v1/events", json={"events": [event(1)]})
        sink.down = False
        retried = await client.post("/v1/events", json={"events": [event(1)]})
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert "send it again" in refused.json()["error"]
    assert retried.status_code == 202
    assert len(sink.sent) == 1


async def test_past_the_rate_a_client_gets_429_with_retry_after_and_nothing_is_sent() -> None:
    sink = Sink()
    async with served(sink, events_per_second=1, max_events=10) as client:
        answers = [
            await client.post("/v1/events", json={"events": [event(n) for n in range(i, i + 5)]})
            for i in range(0, 20, 5)
        ]
    assert [a.status_code for a in answers] == [202, 202, 429, 429]
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert "rate" in answers[2].json()["error"]
    assert len(sink.sent) == 2


async def test_invalid_batches_count_against_the_rate_too() -> None:
    sink = Sink()
    bad = {"events": [{"type": "exposure", "v": 99}] * 5}
    async with served(sink, events_per_second=1, max_events=10) as client:
        answers = [await client.post("/v1/events", json=bad) for _ in range(3)]
        valid = await client.post("/v1/events", json={"events": [event(1)]})
    assert [a.status_code for a in answers] == [400, 400, 429]
    assert valid.status_code == 429
    assert sink.sent == []
