"""``POST /v1/traces`` and ``/v1/logs``: each encoding answered in kind, every refusal a status.

The sink here is a stand-in that records what it was handed: what becomes of an
export in the daemon (translation, the events topic, the DLQ) is the
integration tests' (tests/integration/otlp/test_otlp_http.py).
"""

from __future__ import annotations

import asyncio
import gzip
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from controller.adapters.http.event_intake import BatchNotSent
from controller.adapters.otlp import Admission, OtlpRoutes, Signal, Taken
from controller.core.common import StoreError
from controller.core.telemetry import Bounds, Logs, Spans
from tests.support.app_client import app_client
from tests.support.otel.otlp_exports import (
    Recorder,
    evaluate,
    logs_json,
    logs_proto,
    openfeature_client,
    traces_json,
    traces_proto,
)
from tests.support.waiting import eventually

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


class Sink:
    """Takes every export (refusing ``rejected`` items of each); fails while ``down``."""

    def __init__(self, rejected: int = 0) -> None:
        self.taken: list[tuple[Signal, Spans | Logs]] = []
        self.outcomes: Counter[tuple[Signal, str]] = Counter()
        self.items = 0
        self.rejected, self.down = rejected, False

    async def take(self, client: str, signal: Signal, batch: Spans | Logs) -> Taken:
        if self.down:
            raise BatchNotSent("the broker is away")
        self.taken.append((signal, batch))
        if self.rejected:
            return Taken(self.rejected, f"{self.rejected} not counted (unknown_variant x1)")
        return Taken()

    def count(self, signal: Signal, outcome: str, items: int = 0) -> None:
        self.outcomes[(signal, outcome)] += 1
        self.items += items


@asynccontextmanager
async def served(sink: Sink, **limits: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = web.Application(client_max_size=64 * 1024)
    options: dict[str, Any] = {
        "max_body_bytes": 256 * 1024,
        "max_decoded_bytes": 1024 * 1024,
        "items_per_second": 100_000,
        "body_timeout_seconds": 5.0,
        "bounds": Bounds(),
    }
    OtlpRoutes(sink, **(options | limits)).add_to(app.router)
    async with app_client(app, auto_decompress=False) as client:  # as the daemon serves it
        yield client


def recorded(requests: int = 3) -> Recorder:
    recorder = Recorder()
    client = openfeature_client({"f": "treatment"})
    for i in range(requests):
        with recorder.request():
            evaluate(client, "f", f"u{i}")
    return recorder


def status_of(answer: httpx.Response) -> tuple[int, str]:
    if answer.headers["Content-Type"].startswith("application/json"):
        body = orjson.loads(answer.content)
        return body["code"], body["message"]
    status = Status.FromString(answer.content)
    return status.code, status.message


@pytest.mark.parametrize(
    ("path", "body", "headers", "items"),
    [
        ("/v1/traces", lambda r: traces_proto(r.spans()), PROTOBUF, 3),
        ("/v1/traces", lambda r: traces_json(r.spans()), JSON, 3),
        ("/v1/logs", lambda r: logs_proto(r.records()), PROTOBUF, 0),
        ("/v1/logs", lambda r: logs_json(r.records()), JSON, 0),
    ],
    ids=["traces protobuf", "traces json", "logs protobuf", "logs json"],
)
async def test_an_export_is_decoded_and_answered_in_its_encoding(
    path: str, body: Any, headers: dict[str, str], items: int
) -> None:
    sink = Sink()
    async with served(sink) as client:
        answer = await client.post(path, content=body(recorded()), headers=headers)
    assert answer.status_code == 200, answer.content
    assert answer.headers["Content-Type"].startswith(headers["Content-Type"])
    signal = "traces" if path == "/v1/traces" else "logs"
    assert [s for s, _ in sink.taken] == [signal]
    assert sink.outcomes == Counter({(signal, "accepted"): 1})
    if headers is JSON:
        assert orjson.loads(answer.content) == {}
    elif signal == "traces":
        assert not ExportTraceServiceResponse.FromString(answer.content).HasField("partial_success")
    else:
        assert not ExportLogsServiceResponse.FromString(answer.content).HasField("partial_success")
    assert sink.items == items


async def test_a_gzip_export_is_inflated_and_a_partial_success_named() -> None:
    sink = Sink(rejected=1)
    body = gzip.compress(traces_proto(recorded().spans()))
    async with served(sink) as client:
        answer = await client.post(
            "/v1/traces", content=body, headers=PROTOBUF | {"Content-Encoding": "gzip"}
        )
    assert answer.status_code == 200
    partial = ExportTraceServiceResponse.FromString(answer.content).partial_success
    assert (partial.rejected_spans, partial.error_message) == (
        1,
        "1 not counted (unknown_variant x1)",
    )
    assert sink.outcomes == Counter({("traces", "partial"): 1})


async def test_refusals_each_have_a_status_and_a_reason_in_the_requests_encoding() -> None:
    sink = Sink()
    spans = traces_proto(recorded().spans())
    bomb = gzip.compress(b"\x00" * 4_000_000)
    async with served(sink, max_decoded_bytes=1024 * 1024) as client:
        cases = {
            "bomb": await client.post(
                "/v1/traces", content=bomb, headers=PROTOBUF | {"Content-Encoding": "gzip"}
            ),
            "as sent": await client.post("/v1/traces", content=b"\x00" * 300_000, headers=PROTOBUF),
            "not gzip": await client.post(
                "/v1/logs", content=b"{}", headers=JSON | {"Content-Encoding": "gzip"}
            ),
            "text": await client.post(
                "/v1/traces", content=spans, headers={"Content-Type": "text/plain"}
            ),
            "lz4": await client.post(
                "/v1/traces", content=spans, headers=PROTOBUF | {"Content-Encoding": "lz4"}
            ),
            "br": await client.post(
                "/v1/traces", content=spans, headers=PROTOBUF | {"Content-Encoding": "br"}
            ),
            "zstd": await client.post(
                "/v1/logs", content=b"{}", headers=JSON | {"Content-Encoding": "zstd"}
            ),
            "deflate": await client.post(
                "/v1/logs", content=b"{}", headers=JSON | {"Content-Encoding": "deflate"}
            ),
            "no export": await client.post("/v1/traces", content=b'"a string"', headers=JSON),
            "garbage": await client.post("/v1/logs", content=b"\xff\xfe" * 50, headers=PROTOBUF),
        }
    found = {name: (a.status_code, *status_of(a)) for name, a in cases.items()}
    assert {name: status for name, (status, _, _) in found.items()} == {
        "bomb": 413,
        "as sent": 413,
        "not gzip": 400,
        "text": 415,
        "lz4": 415,
        "br": 415,
        "zstd": 415,
        "deflate": 415,
        "no export": 400,
        "garbage": 400,
    }
    assert found["bomb"][1:] == (8, "the body inflates past 1048576 bytes")
    assert found["as sent"][1:] == (8, "the body is over 262144 bytes")
    assert found["text"][2].startswith(
        "the body must be application/x-protobuf or application/json"
    )
    assert found["br"][1:] == (3, "the body may be sent gzip or identity, not 'br'")
    assert found["zstd"][1:] == (3, "the body may be sent gzip or identity, not 'zstd'")
    assert found["no export"][1] == 3
    assert found["no export"][2].startswith("not an OTLP traces export")
    assert sink.taken == []
    assert sink.outcomes[("traces", "too_large")] == 2


async def test_past_its_rate_a_client_waits_and_the_broker_away_is_a_503() -> None:
    sink = Sink()
    body = traces_proto(recorded(requests=6).spans())
    async with served(sink, items_per_second=10, bounds=Bounds(max_items=10)) as client:
        first = await client.post("/v1/traces", content=body, headers=PROTOBUF)
        second = await client.post("/v1/traces", content=body, headers=PROTOBUF)
        assert (first.status_code, second.status_code) == (200, 429)
        assert int(second.headers["Retry-After"]) >= 1
    sink = Sink()
    sink.down = True
    async with served(sink) as client:
        answer = await client.post("/v1/traces", content=body, headers=JSON)
        down = await client.post("/v1/traces", content=body, headers=PROTOBUF)
    assert answer.status_code == 400  # protobuf sent as JSON: not an export
    assert (down.status_code, down.headers["Retry-After"]) == (503, "2")
    assert status_of(down)[0] == 14  # UNAVAILABLE
    assert sink.outcomes[("traces", "unavailable")] == 1


async def test_a_store_that_does_not_answer_is_a_503_to_retry() -> None:
    class Unreadable(Sink):
        async def take(self, client: str, signal: Signal, batch: Spans | Logs) -> Taken:
            raise StoreError("redis is away")

    sink = Unreadable()
    async with served(sink) as client:
        answer = await client.post(
            "/v1/traces", content=traces_json(recorded().spans()), headers=JSON
        )
    assert (answer.status_code, answer.headers["Retry-After"]) == (503, "2")
    assert status_of(answer) == (14, "not accepted, send it again: redis is away")
    assert sink.outcomes == Counter({("traces", "unavailable"): 1})


class HeldSink(Sink):
    """Takes each export once the test lets it (``release``); says when one is held."""

    def __init__(self) -> None:
        super().__init__()
        self.release, self.holding = asyncio.Event(), asyncio.Event()

    async def take(self, client: str, signal: Signal, batch: Spans | Logs) -> Taken:
        self.holding.set()
        await self.release.wait()
        return await super().take(client, signal, batch)


async def test_past_the_exports_worked_on_and_waiting_an_export_is_a_503_to_retry() -> None:
    sink = HeldSink()
    body = traces_proto(recorded().spans())
    admission = Admission(slots=1, waiting=1)
    async with served(sink, admission=admission, answer_seconds=60.0) as client:
        # Given one export worked on (held by the sink) and one waiting for its turn
        first = asyncio.create_task(client.post("/v1/traces", content=body, headers=PROTOBUF))
        await asyncio.wait_for(sink.holding.wait(), 30)
        second = asyncio.create_task(client.post("/v1/traces", content=body, headers=PROTOBUF))
        await eventually(lambda: admission.full, timeout=30, what="the second export waiting")
        # When a third comes, it is answered at once: 503, Retry-After, its body unread
        third = await client.post("/v1/traces", content=body, headers=JSON)
        # Then the first two are taken once the sink lets them
        sink.release.set()
        answers = [await first, await second]
    assert third.status_code == 503
    assert third.headers["Retry-After"] == "2"
    assert status_of(third) == (14, "busy, send it again: too many exports are waiting")
    assert [a.status_code for a in answers] == [200, 200]
    assert sink.outcomes[("traces", "busy")] == 1
    assert len(sink.taken) == 2


async def test_an_export_without_a_turn_or_its_work_done_in_time_is_a_503() -> None:
    sink = HeldSink()
    body = traces_json(recorded().spans())
    admission = Admission(slots=1, waiting=4)
    async with served(sink, admission=admission, answer_seconds=0.5) as client:
        # One export whose events are not acknowledged within its 0.5 s; one more meanwhile
        first = asyncio.create_task(client.post("/v1/traces", content=body, headers=JSON))
        await asyncio.wait_for(sink.holding.wait(), 30)
        second = await client.post("/v1/traces", content=body, headers=JSON)
        late = await first
        # The late one's work goes on, holding its slot, and is done once the sink lets it
        sink.release.set()
        await eventually(lambda: len(sink.taken) == 1, timeout=30, what="the late export taken")
        after = await client.post("/v1/traces", content=body, headers=JSON)
    assert (late.status_code, late.headers["Retry-After"]) == (503, "2")
    assert status_of(late) == (
        14,
        "busy, send it again: not done within 0.5 s; send it again, it counts once",
    )
    assert after.status_code == 200
    assert (second.status_code, second.headers["Retry-After"]) == (503, "2")
    assert (
        status_of(second)[1]
        == "busy, send it again: too many exports at once (no turn within 0.25 s)"
    )
    assert sink.outcomes[("traces", "busy")] == 2
