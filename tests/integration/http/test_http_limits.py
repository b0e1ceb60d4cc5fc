"""The daemon's HTTP server against slow, greedy and malformed clients, over real sockets.

Every connection goes to 127.0.0.1 only, in bounded numbers, and every wait is
for a positive signal (an answer, the server closing the connection) under a
deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.adapters.http import HttpServer
from controller.integrations.monitors import Intake, MonitorSignal
from tests.integration.http.test_http import wait_status
from tests.integration.rig import Rig
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "limits-webhook-token"
HEADER_TIMEOUT = 2.0
SLOW_HEADERS_TIMEOUT = 8.0
"""The header deadline while 200 clients dribble: opening them all and serving a normal
request can take seconds on two loaded cores, and none may be cut off before that."""
BODY_TIMEOUT = 2.0
SLOW_CLIENTS = 200
SLACK = 3.0  # two shared cores: the daemon's loop may be late by this much
WEBHOOK_HEAD = (
    "POST /webhooks/monitor HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
    "Content-Length: 1000\r\n\r\n"
).encode()


@dataclass
class Dribbled:
    """What one slow client saw: how long the server kept it, and what it answered."""

    seconds: float | None  # None: still open when the client gave up
    answer: bytes
    answered_after: float | None = None


async def dribble(
    port: int,
    head: bytes,
    slow: Iterator[bytes],
    limit: float,
    connected: Callable[[], None] = lambda: None,
) -> Dribbled:
    """Send ``head`` at once, then ``slow`` one byte a second until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    connected()
    seen = Dribbled(None, b"")
    try:
        writer.write(head)
        while time.monotonic() - start < limit:
            writer.write(next(slow))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                chunk = await asyncio.wait_for(reader.read(4096), 1.0)
                if not chunk:
                    seen.seconds = time.monotonic() - start
                    break
                seen.answered_after = seen.answered_after or time.monotonic() - start
                seen.answer += chunk
    except ConnectionError:
        seen.seconds = time.monotonic() - start
    finally:
        writer.close()
    return seen


def endless_header() -> Iterator[bytes]:
    for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ":
        yield bytes([byte])
    while True:
        yield b"a"


def endless_body() -> Iterator[bytes]:
    while True:
        yield b" "


@contextlib.asynccontextmanager
async def limited_daemon(rig: Rig, tmp_path: Path, **env: str) -> AsyncIterator[str]:
    port = free_port()
    rig.env.update(
        {
            "RC_HTTP__PORT": str(port),
            "RC_HTTP__WEBHOOK_TOKEN": TOKEN,
            "RC_HTTP__HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
            "RC_HTTP__BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
            **env,
        }
    )
    base = f"http://127.0.0.1:{port}"
    with rig.daemon(tmp_path):
        await wait_status(f"{base}/healthz", 200)
        yield base


async def test_slow_headers_are_cut_off_while_normal_requests_are_served(
    rig: Rig, tmp_path: Path
) -> None:
    async with limited_daemon(
        rig, tmp_path, RC_HTTP__HEADER_TIMEOUT_SECONDS=str(SLOW_HEADERS_TIMEOUT)
    ) as base:
        port = int(base.rsplit(":", 1)[1])
        limit = SLOW_HEADERS_TIMEOUT + SLACK + 5
        # Given 200 clients each sending its headers at one byte a second
        connections = 0
        all_connected = asyncio.Event()

        def connected() -> None:
            nonlocal connections
            connections += 1
            if connections == SLOW_CLIENTS:
                all_connected.set()

        slow = [
            asyncio.create_task(dribble(port, b"", endless_header(), limit, connected))
            for _ in range(SLOW_CLIENTS)
        ]
        await asyncio.wait_for(all_connected.wait(), 10)
        # Then a normal request is still served while they dribble
        async with httpx.AsyncClient(timeout=5) as client:
            health = await client.get(f"{base}/healthz")
        assert health.status_code == 200
        # before any of them was let go: it did not wait for their header deadline
        assert not any(task.done() for task in slow)
        # And every slow client is closed by the server once its header deadline passed
        seen = await asyncio.gather(*slow)
        still_open = [s for s in seen if s.seconds is None]
        assert still_open == []
        times = sorted(s.seconds for s in seen if s.seconds is not None)
        assert times[0] >= SLOW_HEADERS_TIMEOUT - 1.5  # their deadline, not an instant refusal
        assert times[-1] <= SLOW_HEADERS_TIMEOUT + SLACK, times[-10:]
        assert all(s.answer == b"" for s in seen)


async def test_past_the_connection_limit_a_new_connection_gets_503_until_one_closes(
    rig: Rig, tmp_path: Path
) -> None:
    limit = 10
    async with limited_daemon(
        rig, tmp_path, RC_HTTP__MAX_CONNECTIONS=str(limit), RC_HTTP__HEADER_TIMEOUT_SECONDS="60"
    ) as base:
        port = int(base.rsplit(":", 1)[1])
        # Given as many idle connections as the limit, each accepted by the server
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(limit)]
        try:
            await until_refused(port)
            # When one more connects, it is answered 503 at once and closed
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 503"), answer[:80]
            assert b"too many connections" in answer
            # Then once an idle one closes, a normal request is served again
            idle.pop()[1].close()
            await wait_status(f"{base}/healthz", 200, timeout=10)
        finally:
            for _, idle_writer in idle:
                idle_writer.close()


async def until_refused(port: int, timeout: float = 10) -> None:
    """Wait until the server refuses a new connection: all the idle ones were accepted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        if answer.startswith(b"HTTP/1.1 503"):
            return
    raise AssertionError("the connection limit was never reached")


async def test_a_slow_body_gets_408_and_is_closed(rig: Rig, tmp_path: Path) -> None:
    async with limited_daemon(rig, tmp_path) as base:
        port = int(base.rsplit(":", 1)[1])
        limit = 2 * BODY_TIMEOUT + SLACK + 5
        seen = await asyncio.gather(
            *(dribble(port, WEBHOOK_HEAD, endless_body(), limit) for _ in range(10))
        )
        for slow in seen:
            assert slow.answer.startswith(b"HTTP/1.1 408"), slow.answer[:80]
            assert b"did not arrive within" in slow.answer
            assert slow.answered_after is not None
            assert slow.answered_after <= BODY_TIMEOUT + SLACK
            # aiohttp drains an unread body for at most the body timeout, then closes
            assert slow.seconds is not None
            assert slow.seconds <= 2 * BODY_TIMEOUT + SLACK
        metrics = (await wait_status(f"{base}/metrics", 200)).text
        assert webhook_count(metrics, "timeout") == 10


async def test_webhook_refusals_name_their_reason_and_are_counted(rig: Rig, tmp_path: Path) -> None:
    async with limited_daemon(rig, tmp_path) as base, httpx.AsyncClient(timeout=10) as client:
        url = f"{base}/webhooks/monitor"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = b'{"monitor": "m", "status": "down"}'

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(80):
                yield b" " * 1024

        refusals = {
            "unauthorized": await client.post(url, content=body),
            "unsupported_media_type": await client.post(
                url, content=body, headers={**auth, "Content-Type": "text/plain"}
            ),
            "no_content_type": await client.post(url, content=body, headers=auth),
            "too_large": await client.post(url, json={"pad": "x" * 70_000}, headers=auth),
            "too_large_chunked": await client.post(
                url, content=chunks(), headers={**auth, "Content-Type": "application/json"}
            ),
            "not_json": await client.post(
                url, content=b"{nope", headers={**auth, "Content-Type": "application/json"}
            ),
        }
        statuses = {name: r.status_code for name, r in refusals.items()}
        assert statuses == {
            "unauthorized": 401,
            "unsupported_media_type": 415,
            "no_content_type": 415,
            "too_large": 413,
            "too_large_chunked": 413,
            "not_json": 422,
        }
        assert all(r.json()["error"] for r in refusals.values())
        assert "application/json" in refusals["unsupported_media_type"].json()["error"]
        # A header past the size limit is refused before any handler runs
        huge = await client.get(f"{base}/healthz", headers={"X-Huge": "h" * 9000})
        assert huge.status_code == 400
        metrics = (await wait_status(f"{base}/metrics", 200)).text
        counted = {
            outcome: webhook_count(metrics, outcome)
            for outcome in ("unauthorized", "unsupported_media_type", "too_large", "not_json")
        }
        assert counted == {
            "unauthorized": 1,
            "unsupported_media_type": 2,
            "too_large": 2,
            "not_json": 1,
        }


def webhook_count(metrics_text: str, outcome: str, source: str = "monitor") -> float:
    """``rollout_webhooks_total`` for one source and outcome (0 when never counted)."""
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == "rollout_webhooks_total" and s.labels == {
                "source": source,
                "outcome": outcome,
            }:
                return float(s.value)
    return 0.0


class FlakySink:
    """A monitor sink that fails the first ``failures`` deliveries with a bug-like error."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.counted: list[tuple[str, str]] = []
        self.accepted: list[MonitorSignal] = []

    async def accept(self, signal: MonitorSignal) -> Intake:
        if self.failures:
            self.failures -= 1
            raise KeyError("an unforeseen failure")
        self.accepted.append(signal)
        return Intake(accepted=True, flags=["checkout"])

    def count(self, source: str, outcome: str) -> None:
        self.counted.append((source, outcome))


async def test_an_unforeseen_failure_is_a_500_with_a_reason_and_the_retry_is_accepted() -> None:
    async def nothing() -> Any:
        return None

    sink = FlakySink(failures=1)
    server = HttpServer(
        host="127.0.0.1",
        port=0,
        readiness=nothing,
        flags=nothing,
        metrics=bytes,
        metrics_content_type="text/plain",
        monitors=sink,
        webhook_token=TOKEN,
    )
    body = {"monitor": "payments", "status": "down", "incident_id": "pd-9"}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with server, httpx.AsyncClient(timeout=10) as client:
        url = f"http://127.0.0.1:{server.port}/webhooks/monitor"
        failed = await client.post(url, json=body, headers=auth)
        retried = await client.post(url, json=body, headers=auth)
    assert failed.status_code == 500
    assert "retry" in failed.json()["error"]
    assert retried.status_code == 202, retried.text
    assert [s.incident_id for s in sink.accepted] == ["pd-9"]
    assert sink.counted == [("monitor", "error"), ("monitor", "accepted")]


MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    b"POST /webhooks/monitor HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GARBAGE\r\n\r\n",
]


async def test_malformed_requests_are_logged_as_single_json_lines_without_a_traceback(
    rig: Rig, tmp_path: Path
) -> None:
    async with limited_daemon(rig, tmp_path) as base:
        port = int(base.rsplit(":", 1)[1])
        daemon = rig._daemons[-1]
        # Given requests no HTTP parser can read
        for raw in MALFORMED:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), answer[:80]
        # When the server has logged them
        await asyncio.to_thread(daemon.wait_for_log, "Error handling request")
        # Then every line of the log is one JSON object, with the client's error named
        lines = daemon.log_text().splitlines()
        assert "Traceback" not in "\n".join(lines)
        # (a run's log starts with the command line that started it)
        records = [orjson.loads(line) for line in lines if line.strip() and line[:2] != "$ "]
        refused = [r for r in records if r.get("logger") == "aiohttp.server"]
        assert refused, records[-5:]
        assert {r["status"] for r in refused} == {400}
        assert all(r["error"] in ("BadHttpMessage", "LineTooLong") for r in refused), refused
        assert all("exception" not in r for r in refused)


async def test_a_monitor_no_flag_is_mapped_to_is_a_404_naming_it(rig: Rig, tmp_path: Path) -> None:
    mapped = '{"payments": ["checkout"]}'
    async with (
        limited_daemon(rig, tmp_path, RC_ENGINE__MONITORS=mapped) as base,
        httpx.AsyncClient(timeout=10) as client,
    ):
        url = f"{base}/webhooks/monitor"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        # When a monitor that protects no flag reports down, and then a mapped one
        unmapped = await client.post(
            url, json={"monitor": "paymnets", "status": "down"}, headers=auth
        )
        known = await client.post(url, json={"monitor": "payments", "status": "down"}, headers=auth)
        # Then the first is refused naming the monitor and the setting; the second is accepted
        assert unmapped.status_code == 404, unmapped.text
        assert "'paymnets'" in unmapped.json()["error"]
        assert "engine.monitors" in unmapped.json()["error"]
        assert known.status_code == 202, known.text
        assert known.json()["flags"] == ["checkout"]
        metrics = (await wait_status(f"{base}/metrics", 200)).text
        assert webhook_count(metrics, "unmapped") == 1
