"""An app sends events over HTTP while the controller is killed (``kill -9``) three times
and Redis once; it retries on timeouts and 5xx, re-batching as it goes. Counted equals sent.

The app does what a careful client does and what a careless one does: a batch
whose answer it did not get is sent again with one new event added (a
re-batch, so no two attempts are the same batch), and now and then it sends
25 events of a batch that was accepted with one new one, as if the answer had
been lost. Every attempt only ever grows until a 202, so the events of the
accepted attempts are every event the app sent: each must be counted once.

    python -m pytest -s tests/scenarios/apps/test_intake_kills.py   # prints what the app saw
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RedisServerFactory
from tests.integration.http.test_http import wait_status
from tests.integration.http.test_http_intake import events
from tests.integration.rig import Rig, flags_of
from tests.support.backing.services import free_port
from tests.support.controller_process import ControllerProcess
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCHES = 60
BATCH = 50
CLIENT_TIMEOUT_SECONDS = 1.5


class App:
    """Sends batches until each is accepted, re-batching every retry; records what it sent."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.sent: dict[str, dict[str, Any]] = {}
        self.accepted = 0
        self.seen: Counter[str] = Counter()
        self._rng = random.Random(uuid.uuid4().int)

    async def run(self) -> None:
        for index in range(BATCHES):
            batch = events(BATCH, flag="intake-kills")
            await self.send(batch)
            if index % 5 == 4:  # the answer "lost": 25 acknowledged events and a new one
                await self.send([*self._rng.sample(batch, 25), *events(1, flag="intake-kills")])
            self.accepted += 1

    async def send(self, batch: list[dict[str, Any]]) -> None:
        attempt = batch
        while True:
            self.sent.update((e["id"], e) for e in attempt)
            try:
                answer = await self.client.post("/v1/events", json={"events": attempt})
            except httpx.TimeoutException:
                self.seen["timeout"] += 1
            except httpx.TransportError:
                self.seen["unreachable"] += 1
                await asyncio.sleep(0.2)
            else:
                self.seen[str(answer.status_code)] += 1
                if answer.status_code == 202:
                    body = answer.json()
                    self.seen["named duplicates"] += len(body["duplicates"])
                    return
                assert answer.status_code in (429, 500, 503), answer.text
                await asyncio.sleep(min(0.5, float(answer.headers.get("Retry-After", "0.5"))))
            # The retry re-batches: what it sent, and one event made since
            attempt = [*attempt, *events(1, flag="intake-kills")]
            self.seen["re-batched"] += 1


@pytest.mark.timeout(360)  # its own waits (up to 240 s) run out before pytest's limit
async def test_killed_three_times_and_redis_once_counted_equals_sent_exactly(
    kafka_bootstrap: str,
    topic_factory: Callable[..., Awaitable[str]],
    redis_server_factory: RedisServerFactory,
    tmp_path: Path,
) -> None:
    redis = redis_server_factory(persistent=True)  # fsync-always AOF: a kill loses nothing
    events_topic, dlq = await topic_factory("events", partitions=4), await topic_factory("dlq", 1)
    rig = Rig(kafka_bootstrap, redis.url, events_topic, dlq, f"kills-{uuid.uuid4().hex[:8]}")
    port = free_port()
    rig.env.update(
        RC_HTTP__PORT=str(port),
        RC_HTTP__INTAKE_ACK_TIMEOUT_SECONDS="3",
        RC_HTTP__INTAKE_EVENTS_PER_SECOND="100000",
        RC_HTTP__REQUIRE_APP_KEYS="false",
    )
    base = f"http://127.0.0.1:{port}"
    daemon = rig.daemon(tmp_path).start()
    try:
        await wait_status(f"{base}/healthz", 200, timeout=60)
        async with httpx.AsyncClient(base_url=base, timeout=CLIENT_TIMEOUT_SECONDS) as client:
            app = App(client)
            sending = asyncio.create_task(app.run())
            for at, crash in (
                (8, "controller"),
                (20, "redis"),
                (32, "controller"),
                (44, "controller"),
            ):
                await _after(app, at, sending)
                if crash == "redis":
                    redis.kill()
                    await asyncio.sleep(1.0)  # the app meets a Redis that is away
                    redis.start()
                else:
                    await _kill_and_restart(daemon, base)
            await asyncio.wait_for(sending, timeout=240)
        sent = list(app.sent.values())
        print(f"\nwhat the app saw sending {len(sent)} events: {dict(app.seen)}")
        await rig.settle(timeout=120)
        assert await rig.counted(flags_of(sent)) == len(sent)
        await rig.assert_exact(sent)
        # The crashes were met: retries happened, and the lost answers were named
        assert app.seen["re-batched"] >= 3
        assert app.seen["named duplicates"] >= 25 * (BATCHES // 5) * 0.5
    finally:
        daemon.kill()


async def _after(app: App, accepted: int, sending: asyncio.Task[None]) -> None:
    async def far_enough() -> bool:
        if sending.done():
            sending.result()  # the app's failure, raised here
        assert app.accepted >= accepted, f"{app.accepted} of {accepted} batches accepted"
        return True

    await eventually(far_enough, timeout=120, what=f"{accepted} batches accepted")


async def _kill_and_restart(daemon: ControllerProcess, base: str) -> None:
    daemon.kill()
    await eventually(lambda: _gone(daemon), timeout=30, what="the controller gone")
    daemon.start()
    await wait_status(f"{base}/healthz", 200, timeout=60)


async def _gone(daemon: ControllerProcess) -> bool:
    assert not daemon.running
    return True
