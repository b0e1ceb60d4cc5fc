"""Readers cannot hold back a kill or a probe, with the real daemon, broker and Redis.

A thousand running rollouts make ``GET /rollouts`` some 1.3 MB of JSON and
half a second of work to build. Sixteen clients read it back to back, as fast
as they are answered, while the operator kills a flag: the kill is decided
within the usual reaction time, no run of probes fails as the orchestrator counts
failures (three in a row past a second), and the typical probe is answered in a
fraction of a build. Every connection goes to 127.0.0.1 only; the flood stops
once the kill is seen.

How fast a probe is answered depends on the machine as much as on the daemon: on
two loaded cores a probe waits tens of milliseconds for its turn whatever the
daemon does. So the bound that shows readers do not hold the probes is measured in
the same run: one ``/rollouts`` answer built alone, before the flood. A probe
held behind the readers waits for a build; the median probe must take less than
a quarter of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from controller.adapters.redis.aggregates import connect
from controller.adapters.redis.rollouts import RolloutStore
from controller.ports import SaveOutcome, StateWrite
from controller.settings import RedisSettings
from tests.integration.http.test_http import wait_status
from tests.scenarios.harness import Scenario
from tests.support.backing.services import free_port
from tests.support.waiting import eventually
from tests.unit.core.machine.gate.test_gate import rollout

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROLLOUTS = 1000
READERS = 16
KILL_WITHIN_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 1.0
"""Kubernetes' default ``timeoutSeconds``: a probe slower than this counts as failed."""
PROBE_FAILURES_TO_RESTART = 3
"""Kubernetes' default ``failureThreshold``: this many failed probes in a row restart the pod."""
PROBES_AT_LEAST = 40
"""Probes timed under the flood, enough for their median to mean something."""
MEDIAN_PROBE_OF_A_BUILD = 0.25
"""The median probe under the flood takes at most this share of one ``/rollouts`` build
timed alone in the same run: a probe held behind the readers waits for builds."""
REQUEST = b"GET /rollouts HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@dataclass
class Flood:
    """Clients reading ``/rollouts`` back to back on kept-alive connections, bodies unparsed."""

    port: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    answers: list[tuple[int, int]] = field(default_factory=list)  # (status, body bytes)

    async def reader(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            while not self.stop.is_set():
                self.answers.append(await read_rollouts(reader, writer))
        finally:
            writer.close()


async def read_rollouts(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[int, int]:
    """One ``GET /rollouts`` on a kept-alive connection: its status and body bytes."""
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    body = await reader.readexactly(int(length.group(1)) if length else 0)
    return int(head.split()[1]), len(body)


PROBE = r"""
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
request = b"GET /healthz HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n"
while True:
    started, answer = time.perf_counter(), b""
    try:
        with socket.create_connection((host, port), timeout=30) as probe:
            probe.sendall(request)
            while chunk := probe.recv(4096):
                answer += chunk
    except OSError:
        pass
    took = time.perf_counter() - started
    print(took if answer.startswith(b"HTTP/1.1 200") else "inf", flush=True)
    time.sleep(0.05)
"""


class Prober:
    """The orchestrator, in a process of its own so that the flood's reading here does not
    count: ``/healthz`` on the health port, one probe after another, each timed."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._process: asyncio.subprocess.Process | None = None
        self._reading: asyncio.Task[None] | None = None
        self.took: list[float] = []
        """Each probe's seconds so far, connecting to the answer's last byte (``inf``: not
        a 200)."""

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PROBE,
            "127.0.0.1",
            str(self._port),
            stdout=asyncio.subprocess.PIPE,
        )
        self._reading = asyncio.create_task(self._read(self._process))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            self.took.append(float(line))

    async def stop(self) -> list[float]:
        """Every probe's seconds."""
        assert self._process is not None
        assert self._reading is not None
        with contextlib.suppress(ProcessLookupError):
            self._process.terminate()
        await self._reading
        await self._process.wait()
        return self.took


def failing_run(probes: list[float]) -> int:
    """The longest run of probes in a row that the orchestrator counts as failed."""
    longest = run = 0
    for took in probes:
        run = run + 1 if took >= PROBE_TIMEOUT_SECONDS else 0
        longest = max(longest, run)
    return longest


async def one_build(port: int) -> float:
    """Seconds to read ``/rollouts`` once, alone: its first read, so a build and its bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        started = time.perf_counter()
        answer = await read_rollouts(reader, writer)
        took = time.perf_counter() - started
    finally:
        writer.close()
    status, size = answer
    assert status == 200
    assert size > ROLLOUTS * 1000, size
    return took


async def store_running_rollouts(scenario: Scenario) -> list[str]:
    """``ROLLOUTS`` running rollouts, fresh, so that no timer of theirs fires in the test."""
    now = datetime.now(UTC)
    flags = [f"read-{i:04d}" for i in range(ROLLOUTS)]
    async with connect(RedisSettings(url=scenario.redis_url)) as client:
        states = RolloutStore(client, settings=RedisSettings(key_prefix=scenario.prefix))
        for i, flag in enumerate(flags):
            saved = rollout().model_copy(
                update={
                    "flag": flag,
                    "rollout_id": f"r{i}",
                    "stage_started_at": now,
                    "started_at": now,
                    "updated_at": now,
                }
            )
            assert await states.save(flag, StateWrite(rev=0, rollout=saved)) == SaveOutcome.SAVED
    return flags


async def test_a_kill_and_the_probes_are_not_held_back_by_readers_of_rollouts(
    scenario: Scenario,
) -> None:
    port, health_port = free_port(), free_port()
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__HEALTH_PORT=str(health_port),
        # The flood is answered, not refused: what is shown is that reading costs nothing
        # that matters, not that the rate limit turns readers away.
        RC_HTTP__READS_PER_SECOND="100000",
        # No timer is due: the gate sweeps at start, then gates what has news only.
        RC_ENGINE__SWEEP_INTERVAL_SECONDS="3600",
    )
    # Given a thousand running rollouts and the daemon ready
    flags = await store_running_rollouts(scenario)
    scenario.start_daemon()
    await wait_status(f"http://127.0.0.1:{health_port}/readyz", 200)
    quiet = await scenario.kill_seconds(flags[0], reason="read flood test")
    build = await one_build(port)
    # When sixteen clients read /rollouts back to back, and the orchestrator probes
    flood, prober = Flood(port), Prober(health_port)
    await prober.start()
    tasks = [asyncio.create_task(flood.reader()) for _ in range(READERS)]
    try:
        await eventually(
            lambda: len(flood.answers) >= 2 * READERS, timeout=120, what="the flood answered"
        )
        before = len(flood.answers)
        # And the operator kills a flag meanwhile
        flooded = await scenario.kill_seconds(flags[1], reason="read flood test")
        during = len(flood.answers) - before
        # And the flood goes on until enough probes were timed for a share to mean something
        await eventually(
            lambda: len(prober.took) >= PROBES_AT_LEAST, timeout=120, what="the probes timed"
        )
        reading = sum(not task.done() for task in tasks[:READERS])
    finally:
        flood.stop.set()
        probes = await prober.stop()
        for task in tasks:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await task
    # Then the kill lands within the usual reaction time, and the probes are answered at once
    figures = f"kill {flooded:.2f} s in the flood, {quiet:.2f} s without; {during} reads meanwhile"
    assert flooded <= KILL_WITHIN_SECONDS, figures
    typical = statistics.median(probes)
    slowest = (
        f"{len(probes)} probes, median {typical:.3f} s, slowest {sorted(probes)[-5:]};"
        f" one build alone {build:.3f} s; {figures}"
    )
    assert typical <= MEDIAN_PROBE_OF_A_BUILD * build, slowest
    assert failing_run(probes) < PROBE_FAILURES_TO_RESTART, slowest
    # While the flood read whole lists of every rollout
    assert {status for status, _ in flood.answers} == {200}
    assert min(size for _, size in flood.answers) > ROLLOUTS * 1000
    assert reading == READERS, figures
    # And the daemon still stops cleanly, its read worker with it
    assert scenario.daemon.terminate() == 0
