"""What the probes answer while the daemon starts: the dependency it is waiting for.

The health listener opens before Redis and Kafka are reached, so that an
orchestrator (or an operator with ``curl``) sees why the controller is not
ready yet rather than a refused connection: ``/readyz`` answers 503 with
"waiting for Redis at redis://… (setting redis.url)" until every part is
built, and the full readiness check from then on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from controller.core.wire import JsonObject
from controller.settings import Settings, mask_url

Readiness = Callable[[], Awaitable[tuple[bool, JsonObject]]]
log = structlog.get_logger("controller.daemon.serving.starting")


@dataclass(frozen=True, slots=True)
class Dependency:
    """A dependency as an operator finds it: its name, its address and the setting naming it."""

    name: str
    address: str
    setting: str

    def waiting(self) -> str:
        return f"waiting for {self.name} at {self.address} (setting {self.setting})"

    def down(self, detail: str) -> str:
        return f"{self.name} at {self.address} does not answer (setting {self.setting}): {detail}"


def redis_of(settings: Settings) -> Dependency:
    """Redis, its URL shown with the password hidden."""
    return Dependency("Redis", mask_url(settings.redis.url), "redis.url")


def kafka_of(settings: Settings) -> Dependency:
    return Dependency("Kafka", settings.kafka.bootstrap_servers, "kafka.bootstrap_servers")


class StartUp:
    """The readiness of a daemon that is starting, then of the daemon it became."""

    def __init__(self) -> None:
        self._waiting = "starting"
        self._ready: Readiness | None = None

    def waiting_for(self, dependency: Dependency) -> None:
        """Start-up now waits for ``dependency``."""
        self._waiting = dependency.waiting()
        log.info("start_up_waiting", reason=self._waiting)

    def started(self, readiness: Readiness) -> None:
        """Every part is up: the probes ask ``readiness`` from now on."""
        self._ready = readiness

    async def readiness(self) -> tuple[bool, JsonObject]:
        if self._ready is None:
            return False, {"reason": self._waiting, "starting": True}
        return await self._ready()
