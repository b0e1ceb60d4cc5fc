"""The alert forwarder as an operator runs it: a real process, broker and HTTP receiver."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from controller.core.wire.messages import Alert
from controller.ctl.alerts.alerts import ENV_WEBHOOK, load_ledger
from tests.support.backing.services import ManagedProcess, free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration]

TopicFactory = Callable[..., Awaitable[str]]
SECRET = "T0-B0-s3cretpath"
KINDS = [
    ("rollback", "critical"),
    ("kill", "critical"),
    ("srm", "warning"),
    ("stuck", "warning"),
    ("no_traffic", "warning"),
    ("guardrail", "warning"),
    ("advisor_unavailable", "warning"),
]
ALERT_ID = re.compile(r"^alert `(.+)`$")


@dataclass(frozen=True)
class Post:
    alert_id: str
    status: int
    at: float


class Receiver:
    """A local incoming webhook: records every POST, answers as scripted (else 200)."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.script: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.refused: set[str] = set()
        self.failing: set[str] = set()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook/{token}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hook/{SECRET}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def delivered(self) -> list[str]:
        return [p.alert_id for p in self.posts if p.status == 200]

    def statuses(self, alert_id: str) -> list[int]:
        return [p.status for p in self.posts if p.alert_id == alert_id]

    async def _handle(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        context = body["blocks"][-1]["elements"]
        match = next(m for e in context if (m := ALERT_ID.match(e["text"])))
        alert_id = match.group(1)
        status, headers = self._answer(alert_id)
        self.posts.append(Post(alert_id, status, time.monotonic()))
        reason = {200: "ok", 400: "invalid_payload"}.get(status, "try later")
        return web.Response(status=status, text=reason, headers=headers)

    def _answer(self, alert_id: str) -> tuple[int, dict[str, str]]:
        if alert_id in self.refused:
            return 400, {}
        if alert_id in self.failing:
            return 503, {}
        scripted = self.script.get(alert_id)
        return scripted.pop(0) if scripted else (200, {})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def make_alert(n: int, flag: str) -> Alert:
    kind, severity = KINDS[n % len(KINDS)]
    return Alert.model_validate(
        {
            "type": "alert",
            "v": 1,
            "id": f"alert-{n}-{uuid.uuid4().hex[:8]}",
            "ts": 1_700_000_000_000 + n,
            "flag": flag,
            "rollout_id": f"rollout-{flag}",
            "severity": severity,
            "kind": kind,
            "summary": f"{flag}: {kind} number {n}",
            "details": {"stage": n % 4},
        }
    )


def record(alert: Alert) -> tuple[bytes, bytes]:
    """Keyed by flag, as the controller publishes alerts."""
    assert alert.flag is not None
    return alert.flag.encode(), alert.model_dump_json().encode()


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()


async def produce_markers(bootstrap: str, topic: str, first: int) -> list[Alert]:
    """One alert on every partition, after everything already there.

    A partition is forwarded in order: once each marker is delivered, whatever came
    before it (a redelivery too) was handled.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        markers = [make_alert(first + p, "marker") for p in partitions]
        for partition, alert in zip(partitions, markers, strict=True):
            key, value = record(alert)
            await producer.send_and_wait(topic, key=key, value=value, partition=partition)
    finally:
        await producer.stop()
    return markers


def forwarder(log: Path, *args: str, env: dict[str, str] | None = None) -> ManagedProcess:
    command = [sys.executable, "-m", "controller.ctl.alerts.alerts", *args]
    inherited = {k: v for k, v in os.environ.items() if k != ENV_WEBHOOK}
    # A short session: the broker may wait for the last run's member to time out.
    quick = {"RC_KAFKA__SESSION_TIMEOUT_MS": "3000", "RC_KAFKA__HEARTBEAT_INTERVAL_MS": "300"}
    environment = inherited | quick | {"RC_LOG__FORMAT": "console"} | (env or {})
    return ManagedProcess(command, log, env=environment, stop_timeout=30)


def output(proc: ManagedProcess) -> str:
    """What the process wrote (the log's first line is the command that started it)."""
    return proc.log_path.read_text().split("\n", 1)[1]


def log_lines(proc: ManagedProcess, event: str) -> list[str]:
    return [line for line in output(proc).splitlines() if f" {event} " in line]


async def wait_until(check: Callable[[], bool], proc: ManagedProcess, timeout: float = 60) -> None:

    def reached() -> bool:
        if not proc.running():
            pytest.fail(f"the forwarder exited:\n{proc.log_tail()}")
        assert check(), proc.log_tail()
        return True

    await eventually(reached, timeout=timeout, what="the forwarder to get there")


async def terminate(proc: ManagedProcess) -> int:
    """SIGTERM, off the event loop: the receiver must keep answering meanwhile."""
    await asyncio.to_thread(proc.stop)
    code = proc.returncode
    assert code is not None
    return code


async def test_every_alert_once_in_order_across_a_restart(
    kafka_bootstrap: str, topic_factory: TopicFactory, receiver: Receiver, tmp_path: Path
) -> None:
    topic = await topic_factory("alerts", partitions=3)
    flags = ["checkout.new-flow", "search.ranker", "cart.v2"]
    first = [make_alert(n, flags[n % 3]) for n in range(7)]
    garbage = [(b"checkout.new-flow", b"{not json"), (b"x", b'{"type": "alert", "v": 1}')]
    await produce(
        kafka_bootstrap,
        topic,
        [record(a) for a in first[:3]]
        + garbage[:1]
        + [record(first[3]), record(first[1])]  # the outbox published first[1] twice
        + garbage[1:]
        + [record(a) for a in first[4:]],
    )
    state = tmp_path / "state" / "ledger.json"
    args = ["--bootstrap", kafka_bootstrap, "--topic", topic, "--group", f"g-{uuid.uuid4().hex}"]
    args += ["--state", str(state), "--slack-webhook", receiver.url]

    run1 = forwarder(tmp_path / "run1.log", *args)
    with run1:
        await wait_until(
            lambda: (
                len(receiver.delivered()) == 7
                and len(log_lines(run1, "alert_invalid_skipped")) == 2
                and len(log_lines(run1, "alert_duplicate_skipped")) == 1
            ),
            run1,
        )
        assert await terminate(run1) == 0
    assert len(log_lines(run1, "alert_delivered")) == 7
    assert log_lines(run1, "stopped")

    second = [make_alert(n, flags[n % 3]) for n in range(7, 12)]
    # After a controller crash its outbox republishes, possibly after this restart.
    await produce(kafka_bootstrap, topic, [record(first[6])] + [record(a) for a in second])
    run2 = forwarder(tmp_path / "run2.log", *args)
    with run2:
        await wait_until(
            lambda: (
                len(receiver.delivered()) == 12
                and len(log_lines(run2, "alert_duplicate_skipped")) == 1
            ),
            run2,
        )
        markers = await produce_markers(kafka_bootstrap, topic, first=12)
        await wait_until(lambda: {m.id for m in markers} <= set(receiver.delivered()), run2)
        assert await terminate(run2) == 0

    alerts = first + second + markers
    delivered = receiver.delivered()
    assert Counter(delivered) == Counter(a.id for a in alerts)  # every id exactly once
    assert len(receiver.posts) == len(alerts)
    for flag in flags:
        produced = [a.id for a in alerts if a.flag == flag]
        assert [i for i in delivered if i in produced] == produced, flag
    assert load_ledger(state).ids() == delivered
    for run in (run1, run2):
        assert SECRET not in output(run)


async def test_retries_until_delivered_and_a_refusal_does_not_block(
    kafka_bootstrap: str, topic_factory: TopicFactory, receiver: Receiver, tmp_path: Path
) -> None:
    topic = await topic_factory("alerts-retry", partitions=1)
    flaky, refused, throttled, last = (make_alert(n, "checkout.new-flow") for n in range(4))
    receiver.script[flaky.id] = [(503, {}), (503, {})]
    receiver.refused.add(refused.id)
    receiver.script[throttled.id] = [(429, {"Retry-After": "1"})]
    await produce(kafka_bootstrap, topic, [record(a) for a in (flaky, refused, throttled, last)])
    args = ["--bootstrap", kafka_bootstrap, "--topic", topic, "--group", f"g-{uuid.uuid4().hex}"]
    args += ["--state", str(tmp_path / "ledger.json")]

    proc = forwarder(tmp_path / "run.log", *args, env={ENV_WEBHOOK: receiver.url})
    with proc:
        # ``last`` follows the refused alert on the one partition: once it is
        # delivered, the refusal was settled (a retry of it would come first).
        await wait_until(lambda: last.id in receiver.delivered(), proc)
        assert await terminate(proc) == 0

    assert receiver.statuses(flaky.id) == [503, 503, 200]
    assert receiver.statuses(refused.id) == [400]
    assert receiver.statuses(throttled.id) == [429, 200]
    assert receiver.delivered() == [flaky.id, throttled.id, last.id]
    gap = [p.at for p in receiver.posts if p.alert_id == throttled.id]
    assert gap[1] - gap[0] >= 0.95  # Retry-After: 1 was honoured
    (delivered_flaky,) = [line for line in log_lines(proc, "alert_delivered") if flaky.id in line]
    assert "attempts=3" in delivered_flaky
    assert "status=200" in delivered_flaky
    (refusal,) = log_lines(proc, "alert_refused")
    assert refused.id in refusal
    assert "status=400" in refusal
    assert "invalid_payload" in refusal
    assert refused.id not in load_ledger(tmp_path / "ledger.json")
    assert SECRET not in output(proc)


async def test_an_alert_still_being_retried_at_sigterm_is_sent_after_the_restart(
    kafka_bootstrap: str, topic_factory: TopicFactory, receiver: Receiver, tmp_path: Path
) -> None:
    topic = await topic_factory("alerts-outage", partitions=1)
    alert = make_alert(0, "checkout.new-flow")
    receiver.failing.add(alert.id)
    await produce(kafka_bootstrap, topic, [record(alert)])
    args = ["--bootstrap", kafka_bootstrap, "--topic", topic, "--group", f"g-{uuid.uuid4().hex}"]
    args += ["--state", str(tmp_path / "ledger.json")]
    env = {ENV_WEBHOOK: receiver.url}

    run1 = forwarder(tmp_path / "run1.log", *args, env=env)
    with run1:
        await wait_until(lambda: len(receiver.statuses(alert.id)) >= 3, run1)
        tried = len(receiver.statuses(alert.id))  # then a back-off of 2 s or more
        assert await terminate(run1) == 0  # SIGTERM honoured, not SIGKILLed after the grace
        # The back-off wait ends at the signal: no attempt came after it.
        assert len(receiver.statuses(alert.id)) == tried
    assert receiver.delivered() == []
    (stopped,) = log_lines(run1, "stopped")
    assert "delivered=0" in stopped

    receiver.failing.clear()  # the receiver is back
    run2 = forwarder(tmp_path / "run2.log", *args, env=env)
    with run2:
        await wait_until(lambda: alert.id in receiver.delivered(), run2)
        (marker,) = await produce_markers(kafka_bootstrap, topic, first=1)
        await wait_until(lambda: marker.id in receiver.delivered(), run2)
        assert await terminate(run2) == 0
    assert set(receiver.statuses(alert.id)[:-1]) == {503}
    assert receiver.delivered() == [alert.id, marker.id]
