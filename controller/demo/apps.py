"""Simulated apps: real app-side clients serving the demo's flags to random units.

Each request picks a unit, asks :meth:`FlagClient.arm` which arm to serve (the
shared bucketing function on the flag state followed from the broker) and
reports an exposure, the request's outcome and now and then a conversion
through :class:`EventEmitter`, exactly as an app would. Only the outcome is
made up: see :func:`controller.demo.scenario.error_rate`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

from controller.demo.scenario import CONVERSION_RATE, UNITS, DemoFlag, error_rate
from controller.sdk import EventEmitter, FlagClient

TICK_SECONDS = 0.05


class SimulatedApps:
    """Serves every flag ``requests_per_second`` times a second until cancelled."""

    def __init__(
        self,
        flags: Sequence[DemoFlag],
        *,
        flag_client: FlagClient,
        emitter: EventEmitter,
        fault_at: float,
        requests_per_second: int,
        seed: int = 6,
    ) -> None:
        self._flags = tuple(flags)
        self._client = flag_client
        self._emitter = emitter
        self._fault_at = fault_at
        self._rate = requests_per_second
        self._rng = random.Random(seed)  # noqa: S311 - a simulation, not a secret
        self.requests = 0

    async def run(self) -> None:
        """Keep the rate over time: each tick serves what is due since the start."""
        started = time.monotonic()
        due_total = 0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            due = int((time.monotonic() - started) * self._rate) - due_total
            due_total += due
            # After a stall (a busy machine), catch up by at most one second of traffic.
            for _ in range(min(due, self._rate)):
                for flag in self._flags:
                    self.serve(flag, f"user-{self._rng.randrange(UNITS)}")

    def serve(self, flag: DemoFlag, unit: str) -> None:
        """One request to ``unit`` under ``flag``, reported as an app reports it."""
        arm, version = self._client.arm(flag.name, unit)
        self._emitter.exposure(flag.name, unit, arm, version)
        state = self._client.state(flag.name)
        percent = state.percent if state is not None else 0.0
        failure = error_rate(faulty=flag.faulty, arm=arm, percent=percent, fault_at=self._fault_at)
        failed = self._rng.random() < failure
        latency = round(self._rng.lognormvariate(3.0, 0.4), 2)
        self._emitter.request(flag.name, unit, arm, version, error=failed, latency_ms=latency)
        if not failed and self._rng.random() < CONVERSION_RATE:
            value = round(self._rng.uniform(5, 120), 2)
            self._emitter.conversion(flag.name, unit, arm, version, value=value)
        self.requests += 1
