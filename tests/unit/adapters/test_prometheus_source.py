"""The Prometheus client against a hostile local server: every bad answer is refused with
a reason a person can act on, within the query's deadline, never read past its bound."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
import pytest
import pytest_asyncio

from controller.adapters.prometheus import PrometheusSource, SourceUnavailable
from controller.settings import PrometheusSettings
from tests.support.dripping import Dripper, canned

AT = datetime(2026, 11, 22, 12, tzinfo=UTC)


def vector(*values: str, extra: dict[str, object] | None = None) -> bytes:
    result = [
        {"metric": {"variant": f"v{i}"}, "value": [1.0, value], **(extra or {})}
        for i, value in enumerate(values)
    ]
    data = {"resultType": "vector", "result": result}
    return orjson.dumps({"status": "success", "data": data})


ANSWERS: dict[str, bytes] = {
    "/ok": canned(200, vector("12.5", "3")),
    "/nan": canned(200, vector("NaN", "+Inf", "-Inf")),
    "/scalar": canned(
        200,
        orjson.dumps({"status": "success", "data": {"resultType": "scalar", "result": [1, "0.5"]}}),
    ),
    "/huge": canned(200, b"[" + b"0," * (25 * 1024 * 1024) + b"0]"),
    "/undeclared": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + b" " * 3_000_000,
    "/wrong-type": canned(
        200,
        orjson.dumps(
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, 5]}]},
            }
        ),
    ),
    "/matrix": canned(
        200, orjson.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}})
    ),
    "/label": canned(
        200,
        orjson.dumps(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [{"metric": {"a": 1}, "value": [1, "1"]}],
                },
            }
        ),
    ),
    "/native": canned(200, vector("1", extra={"histogram": [1, {}]})),
    "/redirect": b"HTTP/1.1 302 Found\r\nLocation: https://sso.example/login\r\n"
    b"Content-Length: 0\r\n\r\n",
    "/login": canned(
        200, b"<html><form action=/login>Sign in</form></html>", "text/html; charset=utf-8"
    ),
    "/error": canned(
        400,
        orjson.dumps(
            {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}
        ),
    ),
    "/gzip": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
    b"Content-Length: 4\r\n\r\n\x1f\x8b\x08\x00",
    "/not-json": canned(200, b"{not json"),
    "/many": canned(200, vector(*["1"] * 11)),
    "/slow": canned(200, vector("1")),
}


@pytest_asyncio.fixture
async def server() -> AsyncIterator[str]:
    async def answer(_method: str, path: str, _headers: dict[str, str], _body: bytes) -> bytes:
        prefix = path.removesuffix("/api/v1/query")
        return ANSWERS[prefix]

    dripper = Dripper(answer, slow=lambda _m, path: path.startswith("/slow"), every=0.5)
    url = await dripper.start()
    try:
        yield url
    finally:
        await dripper.close()


def source(url: str, **settings: object) -> PrometheusSource:
    base = {
        "url": url,
        "query_timeout_seconds": 2.0,
        "max_answer_bytes": 1_048_576,
        "max_series": 10,
    }
    return PrometheusSource(PrometheusSettings.model_validate({**base, **settings}))


async def test_a_vector_is_read_into_series(server: str) -> None:
    async with source(server + "/ok") as prometheus:
        answer = await prometheus.query("sum(x)", at=AT)
    assert [(s.labels, s.value) for s in answer.series] == [
        ((("variant", "v0"),), 12.5),
        ((("variant", "v1"),), 3.0),
    ]
    async with source(server + "/scalar") as prometheus:
        assert [s.value for s in (await prometheus.query("1", at=AT)).series] == [0.5]


async def test_nan_and_infinities_pass_for_the_core_to_refuse(server: str) -> None:
    async with source(server + "/nan") as prometheus:
        values = [s.value for s in (await prometheus.query("x", at=AT)).series]
    assert math.isnan(values[0])
    assert values[1:] == [math.inf, -math.inf]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/huge", "declares 52428803 bytes, over the 1048576-byte limit"),
        ("/undeclared", "over the 1048576-byte limit"),
        ("/wrong-type", 'a sample is not [time, "value"]'),
        ("/matrix", "a result of type 'matrix': an instant vector was meant"),
        ("/label", "the label 'a' is not a bounded string"),
        ("/native", "a native histogram"),
        ("/redirect", "a redirect (302) to 'https://sso.example/login', not followed"),
        ("/login", "status 200 with content type 'text/html', not JSON"),
        ("/error", "the query failed: bad_data: parse error at char 5"),
        ("/gzip", "a compressed answer"),
        ("/not-json", "the answer is not JSON"),
        ("/many", "11 series, more than the 10 allowed"),
        ("/slow", "the query: no complete answer within 2 s"),
    ],
)
async def test_a_hostile_answer_is_refused_with_its_reason(
    server: str, path: str, reason: str
) -> None:
    async with source(server + path) as prometheus:
        with pytest.raises(SourceUnavailable) as refused:
            await prometheus.query("sum(x)", at=AT)
    assert reason in str(refused.value)
    assert refused.value.retriable


async def test_a_server_that_is_not_there_is_refused_with_the_cause() -> None:
    async with source("http://127.0.0.1:9") as prometheus:
        with pytest.raises(SourceUnavailable, match="ConnectError"):
            await prometheus.query("up", at=AT)
