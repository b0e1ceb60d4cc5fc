"""Monitor webhooks into the monitors topic: accepted once per incident.

A webhook delivery becomes a ``monitor`` message on the monitors topic, the
same path a monitoring system that writes to Kafka takes, so the engine
handles both alike (``down`` kills the mapped flags, ``up`` records the
recovery). The order: claim the signal's id in Redis (a redelivery finds it
claimed and changes nothing), then publish; if publishing fails the claim is
released, so the monitor's retry is accepted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from controller.core.messages import MonitorAlert
from controller.core.monitors import Intake, MonitorSignal, signal_fields
from controller.metrics import Metrics


class Claims(Protocol):
    async def claim(self, claim_id: str, *, ttl_s: int) -> bool: ...
    async def release(self, claim_id: str) -> None: ...


class Outputs(Protocol):
    async def publish(self, messages: list[tuple[str, str, bytes]]) -> None: ...


class MonitorIntake:
    """Publishes monitor signals to the monitors topic, once per incident and status."""

    def __init__(
        self,
        *,
        claims: Claims,
        outputs: Outputs,
        topic: str,
        monitors: dict[str, list[str]],
        dedupe_seconds: int,
        metrics: Metrics,
    ) -> None:
        self._claims, self._outputs, self._topic = claims, outputs, topic
        self._monitors, self._ttl, self._metrics = monitors, dedupe_seconds, metrics

    async def accept(self, signal: MonitorSignal) -> Intake:
        """Publish ``signal`` unless this incident's status was already accepted."""
        flags = list(self._monitors.get(signal.monitor, []))
        if not await self._claims.claim(signal.message_id, ttl_s=self._ttl):
            self._metrics.webhooks.labels(signal.source, "duplicate").inc()
            return Intake(accepted=False, flags=flags)
        message = MonitorAlert.model_validate({**signal_fields(signal), "ts": datetime.now(UTC)})
        try:
            await self._outputs.publish(
                [(self._topic, signal.monitor, message.model_dump_json().encode())]
            )
        except BaseException:
            await self._claims.release(signal.message_id)
            raise
        self._metrics.webhooks.labels(signal.source, "accepted").inc()
        return Intake(accepted=True, flags=flags)
