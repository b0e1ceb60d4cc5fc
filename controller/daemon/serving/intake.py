"""Monitor webhooks into the monitors topic: accepted once per incident and reopen.

A webhook delivery becomes a ``monitor`` message on the monitors topic, the
same path a monitoring system that writes to Kafka takes, so the engine
handles both alike (``down`` kills the mapped flags, ``up`` records the
recovery).

A delivery counts as seen only once it was published: the whole message is
validated first (a refusal takes no claim), then the signal's id is claimed in
Redis (a redelivery finds it claimed and changes nothing), then it is
published. Any failure after the claim was attempted releases it, so the
monitor's retry is accepted rather than answered "duplicate" for a signal that
never reached the topic. Releasing a claim that was not ours (the claim call
failed, and a concurrent delivery took it) at worst publishes a signal twice:
a second ``down`` finds the flag already killed, a second ``up`` is recorded
twice. Keeping a claim for an unpublished signal would lose a kill.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from pydantic import ValidationError

from controller.core.wire import MonitorAlert, summarize
from controller.daemon.metrics import Metrics
from controller.integrations.monitors import (
    Intake,
    MonitorSignal,
    PayloadError,
    UnmappedMonitor,
    signal_fields,
)
from controller.ports import Claims, Outputs


class MonitorIntake:
    """Publishes monitor signals to the monitors topic, once per incident, status and reopen."""

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
        """Publish ``signal`` unless this incident's status was already accepted.

        Raises :class:`PayloadError` (nothing claimed) when the signal does not
        make a valid monitor message, :class:`UnmappedMonitor` (nothing claimed
        or published) when no flag is mapped to its monitor; any other error leaves no claim behind.
        """
        flags = list(self._monitors.get(signal.monitor, []))
        if not flags:
            raise UnmappedMonitor(signal.monitor)
        value = _message(signal)
        try:
            fresh = await self._claims.claim(signal.message_id, ttl_s=self._ttl)
            if fresh:
                await self._outputs.publish([(self._topic, signal.monitor, value)])
        except BaseException:
            await self._release(signal.message_id)
            raise
        return Intake(accepted=fresh, flags=flags)

    def count(self, source: str, outcome: str) -> None:
        """Count one delivery from ``source`` by what became of it (the HTTP server's word)."""
        self._metrics.webhooks.labels(source, outcome).inc()

    async def _release(self, claim_id: str) -> None:
        # Best effort: the error that brought us here is the one to report,
        # and when Redis is down the claim call most likely never landed.
        with contextlib.suppress(Exception):
            await self._claims.release(claim_id)


def _message(signal: MonitorSignal) -> bytes:
    """The monitor message for ``signal``, validated against the contract."""
    try:
        message = MonitorAlert.model_validate({**signal_fields(signal), "ts": datetime.now(UTC)})
    except ValidationError as exc:
        raise PayloadError(f"not a valid monitor message: {summarize(exc)}") from exc
    return message.model_dump_json().encode()
