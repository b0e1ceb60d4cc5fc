"""``POST /v1/events`` through the daemon: every accepted event counted once, nothing else.

The outage test owns its broker (of the kind the session runs on: Apache Kafka
under CI), behind a gate (a TCP proxy the broker advertises), so it can take
Kafka away from the daemon and give it back with its data: the broker keeps
running, its clients cannot reach it. Its app is
a Node process sending with ``clients/js`` (``tests/node/intake_app.mjs``),
which retries a batch after ``Retry-After`` until it is accepted.

    python -m pytest -s tests/integration/http/test_http_intake.py   # prints what the app saw
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.http.test_http import wait_status
from tests.integration.rig import Rig, flags_of
from tests.support.backing.kafka_service import own_broker
from tests.support.backing.services import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 20.0
NODE_APP = Path(__file__).resolve().parents[2] / "node" / "intake_app.mjs"


def events(n: int, flag: str = "intake") -> list[dict[str, Any]]:
    """``n`` events of every kind, with unique ids, as an app sends them."""
    made: list[dict[str, Any]] = []
    for i in range(n):
        base = {
            "v": 1,
            "id": uuid.uuid4().hex,
            "ts": 1_700_000_000_000 + i,
            "flag": flag,
            "unit": f"u{i % 37}",
            "arm": "treatment" if i % 2 else "control",
            "flag_version": 1,
        }
        kind = i % 5
        if kind == 0:
            made.append({"type": "exposure", **base})
        elif kind == 1:
            made.append({"type": "request", **base, "error": i % 7 == 0, "latency_ms": i % 300})
        elif kind == 2:
            made.append({"type": "conversion", **base, "value": float(i % 7)})
        else:
            made.append({"type": "crash" if kind == 3 else "exception", **base})
    return made


async def send(
    client: httpx.AsyncClient, batch: list[dict[str, Any]], seen: Counter[str]
) -> dict[str, Any]:
    """Send ``batch`` until it is accepted, as an app retries: 503 and 429 after Retry-After."""
    while True:
        try:
            answer = await client.post("/v1/events", json={"events": batch})
        except httpx.TransportError:
            seen["unreachable"] += 1
            await asyncio.sleep(0.2)
            continue
        seen[str(answer.status_code)] += 1
        if answer.status_code == 202:
            body: dict[str, Any] = answer.json()
            return body
        assert answer.status_code in (429, 503), answer.text
        assert "Retry-After" in answer.headers
        await asyncio.sleep(min(1.0, float(answer.headers["Retry-After"])))


def _intake_env(rig: Rig, port: int, **extra: str) -> None:
    rig.env["RC_HTTP__PORT"] = str(port)
    rig.env["RC_HTTP__INTAKE_ACK_TIMEOUT_SECONDS"] = "3"
    rig.env["RC_HTTP__REQUIRE_APP_KEYS"] = (
        "false"  # keys: tests/scenarios/operators/test_app_keys.py
    )
    rig.env.update(extra)


async def test_sent_events_are_counted_exactly_refusals_not_at_all_retries_once(
    rig: Rig, tmp_path: Path
) -> None:
    port = free_port()
    # 100 events a second, a burst of one full batch (500): a client sending batches of 500
    # back to back is slowed whatever the machine's pace, as only a batch sent 5 s after the
    # one before it finds the bucket full again (the broker's acknowledgement is waited for
    # 3 s, so no answer takes that long)
    _intake_env(rig, port, RC_HTTP__INTAKE_EVENTS_PER_SECOND="100")
    base = f"http://127.0.0.1:{port}"
    sent = [events(500) for _ in range(4)] + [events(1), events(100)]
    seen: Counter[str] = Counter()
    daemon = rig.daemon(tmp_path)
    with daemon:
        await wait_status(f"{base}/healthz", 200)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            hostile = await _hostile(client)  # first: the bucket is then near full again
            answers = [await send(client, batch, seen) for batch in sent]
        assert [a["accepted"] for a in answers] == [len(b) for b in sent]
        assert not any(a["duplicate"] for a in answers)
        # 4 x 500 events back to back at 100 a second: the client was slowed
        assert seen["429"] >= 3
        # A retry after a restart, whose answer the app never got, is not counted again
        assert daemon.terminate() == 0
        daemon.start()
        await wait_status(f"{base}/healthz", 200)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            again = await send(client, list(reversed(sent[2])), seen)
        assert (again["accepted"], again["duplicate"]) == (500, True)
        everything = [e for batch in sent for e in batch]
        await rig.settle()
        await rig.assert_exact(everything)
        assert await rig.counted(flags_of(everything) | {"hostile"}) == len(everything)
    assert hostile == {
        "deep": (400, "nested deeper"),
        "huge": (413, "over 1048576 bytes"),
        "invalid": (400, "1 of 3 events are invalid"),
        "not_json": (400, "must be"),
        "too_many": (413, "at most 500"),
    }


async def _hostile(client: httpx.AsyncClient) -> dict[str, tuple[int, str]]:
    """Each hostile request's status and the start of its reason; none counts a thing."""
    json = {"Content-Type": "application/json"}
    good = events(3, flag="hostile")
    bad = [good[0], {**good[1], "arm": "blue"}, good[2]]
    bodies = {
        "deep": b'{"events": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
        "huge": b'{"events": [' + b" " * 2_000_000 + b"]}",
        "invalid": httpx.Request("POST", "/", json={"events": bad}).read(),
        "not_json": b"{nope",
        "too_many": httpx.Request("POST", "/", json={"events": events(501, "hostile")}).read(),
    }
    found = {}
    for name, body in bodies.items():
        answer = await client.post("/v1/events", content=body, headers=json)
        reason = answer.json()["error"]
        words = next(w for w in _WORDS if w in reason)
        found[name] = (answer.status_code, words)
    return found


_WORDS = (
    "nested deeper",
    "over 1048576 bytes",
    "1 of 3 events are invalid",
    "must be",
    "at most 500",
)


# --------------------------------------------------------------------------------------
# Kafka taken away: a gate between the daemon and the broker
# --------------------------------------------------------------------------------------


class Gate:
    """A TCP proxy on its own thread: ``close()`` cuts every connection and refuses new ones."""

    def __init__(self, target: int) -> None:
        self.port, self._target = free_port(), target
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def open(self) -> None:
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(10)

    def stop(self) -> None:
        self.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, up_writer}
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    target = free_port()
    gate = Gate(target)
    gate.open()
    _, broker = own_broker(tmp_path, port=target, advertised_port=gate.port)
    try:
        yield gate
    finally:
        gate.stop()
        broker.stop()


@pytest.fixture
async def gated_rig(gate: Gate, redis_url: str, redis_namespace: str) -> Rig:
    bootstrap = f"127.0.0.1:{gate.port}"
    names = [f"intake-{uuid.uuid4().hex[:8]}", f"intake-dlq-{uuid.uuid4().hex[:8]}"]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [
            NewTopic(name=n, num_partitions=p, replication_factor=1)
            for n, p in zip(names, (4, 1), strict=True)
        ]
        await admin.create_topics(topics)
    finally:
        await admin.close()
    return Rig(bootstrap, redis_url, names[0], names[1], redis_namespace)


class NodeApp:
    """A Node app sending events with clients/js (``tests/node/intake_app.mjs``), over a pipe."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    async def start(cls, node: str, base: str) -> NodeApp:
        process = await asyncio.create_subprocess_exec(
            node,
            str(NODE_APP),
            base,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        return cls(process)

    async def ask(self, timeout: float = 30, **command: Any) -> dict[str, Any]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(orjson.dumps(command) + b"\n")
        await self._process.stdin.drain()
        line = await asyncio.wait_for(self._process.stdout.readline(), timeout)
        assert line, f"the Node app ended (exit code {self._process.returncode})"
        answer: dict[str, Any] = orjson.loads(line)
        return answer

    async def seen(self) -> Counter[str]:
        return Counter(await self.ask(cmd="seen"))

    def kill(self) -> None:
        if self._process.returncode is None:
            self._process.kill()


async def test_kafka_away_a_node_app_gets_503s_and_after_recovery_every_event_counts_once(
    gated_rig: Rig, gate: Gate, tmp_path: Path, node: str
) -> None:
    rig = gated_rig
    port, health = free_port(), free_port()
    _intake_env(rig, port, RC_HTTP__HEALTH_PORT=str(health))
    base = f"http://127.0.0.1:{port}"
    daemon = rig.daemon(tmp_path)
    with daemon:
        await wait_status(f"{base}/readyz", 200, timeout=60)
        app = await NodeApp.start(node, base)
        try:
            for _ in range(10):
                await app.ask(cmd="send", n=50, flag="intake")
            assert (await app.ask(cmd="flush"))["sent"] == 500
            # Kafka goes away; the app keeps sending, a batch of 50 every half second
            gate.close()
            cut_at = time.monotonic()
            sent = 500

            async def sending(until: Callable[[Counter[str]], bool]) -> bool:
                """Another batch's worth of events, and whether the app has seen ``until``."""
                nonlocal sent
                await app.ask(cmd="send", n=50, flag="intake")
                sent += 50
                assert until(await app.seen())
                return True

            await eventually(
                lambda: sending(lambda seen: seen["503"] >= 2), timeout=60, what="503s"
            )
            # ... and the controller crashes (kill -9) and starts again during the outage
            daemon.kill()
            await eventually(lambda: not daemon.running, timeout=30, what="the daemon gone")
            daemon.start()
            await eventually(
                lambda: _waits_for_kafka(health),
                timeout=60,
                what="the new daemon waiting for Kafka",
            )
            # The outage's length is the scenario: the app sends on through all of it
            await eventually(
                lambda: sending(lambda _: time.monotonic() - cut_at >= OUTAGE_SECONDS),
                timeout=OUTAGE_SECONDS + 30,
                what=f"{OUTAGE_SECONDS:g} s of outage",
            )
            gate.open()
            closed = await app.ask(cmd="close", timeout_ms=120_000, timeout=150)
        finally:
            app.kill()
        everything = closed["events"]
        assert len(everything) == sent
        assert closed["counters"] == {"sent": sent, "dropped": 0, "rejected": 0, "retries": ANY}
        await rig.settle()
        await rig.assert_exact(everything)
        assert await rig.counted(flags_of(everything)) == len(everything)
    seen = closed["seen"]
    print(
        f"\nwhat the Node app saw sending {sent} events through a {OUTAGE_SECONDS:g} s outage"
        f" and a restart: {seen}"
    )
    assert seen["503"] >= 2
    assert seen["unreachable"] >= 1  # the restarted daemon waited for Kafka before serving
    assert closed["counters"]["retries"] >= seen["503"]


async def _waits_for_kafka(port: int) -> bool:
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            answer = await client.get(f"http://127.0.0.1:{port}/readyz")
        except httpx.HTTPError as exc:
            raise AssertionError(repr(exc)) from exc
    assert answer.status_code == 503, answer.text
    assert "Kafka" in answer.text, answer.text
    return True


async def test_sigterm_with_kafka_away_stops_within_grace_and_names_what_it_abandoned(
    gated_rig: Rig, gate: Gate, tmp_path: Path
) -> None:
    """aiokafka's own close waits for a broker that never answers: the daemon does not."""
    rig = gated_rig
    port = free_port()
    _intake_env(rig, port, RC_SHUTDOWN_GRACE_SECONDS="3")
    daemon = rig.daemon(tmp_path)
    with daemon:
        await wait_status(f"http://127.0.0.1:{port}/readyz", 200, timeout=60)
        gate.close()
        # grace 3 s + the closes' 5 s margin, well inside this bound (past it: SIGKILL, < 0)
        code = daemon.terminate(timeout=30)
    log = daemon.log_text()
    assert code in (0, 3), log[-3000:]  # 3: the drain was cut short, nothing acknowledged lost
    assert '"event": "close_abandoned"' in log, log[-3000:]
