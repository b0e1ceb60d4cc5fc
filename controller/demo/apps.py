"""Simulated apps: real app-side clients serving the demo's flags to random units.

Each request picks a user (:class:`controller.demo.scenario.Users`: staff and
beta testers send more than their share), asks :meth:`FlagClient.evaluate`
which arm to serve with the user's context (the flag state's rings, the
segments followed from the broker and the shared bucketing function) and
reports an exposure, the request's outcome and now and then a conversion
through :class:`EventEmitter`, each with the evaluation's cohort, exactly as
an app would. Only the outcome is made up: see
:func:`controller.demo.scenario.error_rate`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

from controller.demo.scenario import CONVERSION_RATE, DemoFlag, Users, error_rate, users
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
        requests_per_second: int,
        seed: int = 6,
    ) -> None:
        self._flags = tuple(flags)
        self._client = flag_client
        self._emitter = emitter
        self._users: Users = users()
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
                    self.serve(flag, self._users.pick(self._rng))

    def serve(self, flag: DemoFlag, context: dict[str, Any]) -> None:
        """One request by the user of ``context`` under ``flag``, reported as an app reports it."""
        unit = context["user_id"]
        found = self._client.evaluate(flag.name, unit, context)
        arm, version, cohort = found.arm, found.version, found.cohort
        emit = self._emitter
        emit.exposure(flag.name, unit, arm, version, cohort=cohort)
        failed = self._rng.random() < error_rate(faulty=flag.faulty, arm=arm)
        latency = round(self._rng.lognormvariate(3.0, 0.4), 2)
        emit.request(flag.name, unit, arm, version, error=failed, latency_ms=latency, cohort=cohort)
        if not failed and self._rng.random() < CONVERSION_RATE:
            value = round(self._rng.uniform(5, 120), 2)
            emit.conversion(flag.name, unit, arm, version, value=value, cohort=cohort)
        self.requests += 1
