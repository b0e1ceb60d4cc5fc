"""Which commands partitions, hence which flags' rollouts, this instance runs now."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import structlog

from controller.daemon.metrics import Metrics

log = structlog.get_logger("controller.daemon.rollouts.engine")


class Sweeping(Protocol):
    def sweep_soon(self) -> None:
        """Gate every owned flag at the next pass."""


@dataclass(slots=True)
class Ownership:
    """Told which commands partitions, hence which flags' rollouts, this instance runs now."""

    metrics: Metrics
    engine: Sweeping | None = None

    def assigned(self, owned: list[int]) -> None:
        log.info("commands_partitions_assigned", partitions=owned)
        self.metrics.owned("commands", owned)
        if self.engine is not None:  # flags taken over from a lost instance: gate them now
            self.engine.sweep_soon()
