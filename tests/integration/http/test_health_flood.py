"""Probes are answered while a flood of slow clients holds the main port, over real sockets.

Every connection goes to 127.0.0.1 only; the flood is bounded in connections
and in time, and stops once the probes are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from controller.adapters.http.health import MAX_CONNECTIONS, HealthServer
from tests.integration.http.test_http import wait_status
from tests.integration.rig import Rig
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLOOD = 300
CAP = 100  # the main port's max_connections: the flood is three times that
PROBES = 30
HEAD = b"GET /rollouts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@dataclass
class Flood:
    """Slow clients that dribble headers and reconnect when the server closes them."""

    port: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    connected: int = 0
    refused: int = 0  # answered 503 "too many connections": the cap was reached
    full: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(OSError):
                await self._one_connection()
            await asyncio.sleep(0.1)

    async def _one_connection(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.connected += 1
        try:
            writer.write(HEAD)
            while not self.stop.is_set():
                with contextlib.suppress(TimeoutError):
                    answer = await asyncio.wait_for(reader.read(4096), 0.5)
                    if b"too many connections" in answer:
                        self.refused += 1
                        self.full.set()
                    if not answer:
                        return  # closed by the server: connect again
                writer.write(b"a")
                await writer.drain()
        finally:
            writer.close()


async def test_probes_answer_on_the_health_port_while_a_flood_holds_the_main_port(
    rig: Rig, tmp_path: Path
) -> None:
    port, health_port = free_port(), free_port()
    rig.env.update(
        {
            "RC_HTTP__PORT": str(port),
            "RC_HTTP__HEALTH_PORT": str(health_port),
            "RC_HTTP__MAX_CONNECTIONS": str(CAP),
            "RC_HTTP__HEADER_TIMEOUT_SECONDS": "2",
        }
    )
    health = f"http://127.0.0.1:{health_port}"
    with rig.daemon(tmp_path):
        await wait_status(f"{health}/readyz", 200)
        # Given three times as many slow clients as the main port serves
        flood = Flood(port)
        clients = [asyncio.create_task(flood.client()) for _ in range(FLOOD)]
        try:
            await asyncio.wait_for(flood.full.wait(), 60)  # the main port is full
            # When the orchestrator probes all along, from a thread of its own as a kubelet
            # is a process of its own (on this loop, which the flood's clients keep busy, a
            # loaded machine could stall a probe between its connect and its request past
            # the header time-out)
            answers = await asyncio.to_thread(_probe, health)
            still_refused = flood.refused
        finally:
            flood.stop.set()
            await asyncio.gather(*clients, return_exceptions=True)
        # Then every probe was answered 200, while the flood kept the main port full
        assert answers == [200] * (2 * PROBES)
        assert still_refused > 0
        assert flood.connected > FLOOD


def _probe(health: str) -> list[int]:
    """Each probe's status, ``PROBES`` times both paths, 0.2 s apart."""
    answers = []
    # A new connection per probe, as the kubelet's: a kept-alive one could meet the header
    # time-out between two probes and be closed
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(timeout=5, limits=no_reuse) as client:
        for _ in range(PROBES):
            for path in ("/healthz", "/readyz"):
                answers.append(client.get(f"{health}{path}").status_code)
            time.sleep(0.2)
    return answers


async def test_a_full_health_port_closes_its_oldest_connection_for_a_probe() -> None:
    async def ready() -> tuple[bool, dict[str, object]]:
        return True, {}

    server = HealthServer(
        host="127.0.0.1",
        port=0,
        readiness=ready,
        metrics=lambda: b"rollout_up 1\n",
        metrics_content_type="text/plain",
    )
    async with server:
        # Given as many idle connections as the listener holds, each accepted
        idle = [
            await asyncio.open_connection("127.0.0.1", server.port) for _ in range(MAX_CONNECTIONS)
        ]
        try:
            first_reader = idle[0][0]
            # When a probe connects, it is answered, and the oldest idle one is closed
            # A new connection per probe, as the kubelet's: a kept-alive one could meet
            # the header time-out while a loaded machine stalls this loop, and be closed
            no_reuse = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=5, limits=no_reuse) as client:
                probed = await client.get(f"http://127.0.0.1:{server.port}/healthz")
                metrics = await client.get(f"http://127.0.0.1:{server.port}/metrics")
            assert probed.status_code == 200
            assert probed.json() == {"status": "ok"}
            assert metrics.text == "rollout_up 1\n"
            assert await asyncio.wait_for(first_reader.read(), 5) == b""
            assert server.evicted >= 1
        finally:
            for _, writer in idle:
                writer.close()
