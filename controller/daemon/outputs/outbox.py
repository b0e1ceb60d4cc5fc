"""The outbox: publish what a flag's saved state implies, and set aside what never can be.

The engine saves a flag's new state and the messages it implies in one
compare-and-set; :meth:`Outbox.drain` then publishes those messages in order
and drops them, by entry id, only once the broker has them, so a crash in
between republishes them (consumers deduplicate by message id). One drain of
a flag runs at a time across instances (a lease in the store), so the drain
at start-up and the owner's never interleave a flag's messages. A message the broker
refuses for good (too large, not writable) or an entry that cannot be read is
moved to the flag's quarantine with an alert, so the messages after it, a
kill above all, still go out. Before publishing, a drain waits until a Redis
replica has the state it read (``WAIT``), so a failover never undoes a state
whose messages are out; a drain that failed is tried again by the engine.
A drain waiting for another instance's lease gives up when the engine stops:
the messages stay saved for the next drain, and waiting out a peer
stuck mid-drain would outlast the shutdown grace period.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime

import structlog

from controller.core.common import ControllerError
from controller.core.rollouts import RaiseAlert
from controller.daemon.metrics import Metrics
from controller.daemon.outputs.rendering import render
from controller.kit.backoff import sleep_or_stop
from controller.ports import OutboxMessage, Outputs, RolloutStates, StateWrite
from controller.settings import TopicSettings

log = structlog.get_logger("controller.daemon.outputs.outbox")

DRAIN_LEASE_MS = 10_000
"""How long a drain's lease lasts unless renewed: a crashed drainer blocks others this long."""


class Outbox:
    """Drains flags' outboxes to the output topics; the caller holds the flag's lock."""

    def __init__(
        self,
        *,
        states: RolloutStates,
        outputs: Outputs,
        topics: TopicSettings,
        metrics: Metrics,
        clock: Callable[[], datetime],
        stopping: asyncio.Event,
    ) -> None:
        self._states, self._outputs, self._topics = states, outputs, topics
        self._metrics, self._now, self._stopping = metrics, clock, stopping
        self.undrained: set[str] = set()
        """Flags whose last drain failed: their saved messages still wait to go out."""

    async def drain(self, flag: str) -> None:
        """Publish ``flag``'s pending messages in order; quarantine any that never can go.

        Holds the flag's drain lease throughout, waiting for another instance's
        drain to end first, and drains until the outbox is empty, so a message
        saved while another drain held the lease is published by one of them.
        """
        token = uuid.uuid4().hex
        try:
            if not await self._hold(flag, token):
                log.info("drain_deferred", flag=flag, why="stopping while another drain held it")
                self.undrained.add(flag)
                return
            try:
                await self._drain_held(flag, token)
            finally:
                await self._states.end_drain(flag, token)
        except BaseException:
            self.undrained.add(flag)  # the engine tries again at its next pass
            raise
        self.undrained.discard(flag)

    async def _hold(self, flag: str, token: str) -> bool:
        """Wait until this drain holds ``flag``'s lease; False if stopping was asked first."""
        delay = 0.01
        while not await self._states.hold_drain(flag, token, ttl_ms=DRAIN_LEASE_MS):
            if await sleep_or_stop(delay, self._stopping):
                return False
            delay = min(delay * 2, 0.25)
        return True

    async def _drain_held(self, flag: str, token: str) -> None:
        pending = await self._states.pending(flag)
        while pending:
            # What was read is on a replica before it goes out, so a failover
            # keeps the state these messages announce; and only what the master
            # still holds then goes out (a failover meanwhile may have lost some).
            await self._states.replicated(flag)
            kept = {m.id for m in await self._states.pending(flag)}
            pending = [m for m in pending if m.id in kept]
            if not pending:
                pending = await self._states.pending(flag)
                continue
            sent, refusal = await self._publish(pending)
            dropped = 0
            if sent:
                dropped = await self._states.published(flag, [m.id for m in pending[:sent]])
            if refusal is not None:
                await self._quarantine(flag, refusal)
            elif dropped == 0:
                return  # confirmed by another drain, or already gone: nothing to repeat
            await self._states.hold_drain(flag, token, ttl_ms=DRAIN_LEASE_MS)
            pending = await self._states.pending(flag)

    async def _publish(self, messages: list[OutboxMessage]) -> tuple[int, str | None]:
        """Publish in order: how many went out, and why the next one never can (or None).

        Retriable failures propagate. A permanent one is narrowed down to the
        first message that cannot be published, so the ones before it still go.
        """
        readable = next((i for i, m in enumerate(messages) if not m.readable), len(messages))
        try:
            await self._outputs.publish([(m.topic, m.key, m.value) for m in messages[:readable]])
        except ControllerError as exc:
            if exc.retriable:
                raise
        else:
            if readable == len(messages):
                return readable, None
            return readable, "the outbox entry is unreadable"
        return await self._publish_each(messages[:readable])

    async def _publish_each(self, messages: list[OutboxMessage]) -> tuple[int, str | None]:
        for index, m in enumerate(messages):
            try:
                await self._outputs.publish([(m.topic, m.key, m.value)])
            except ControllerError as exc:
                if exc.retriable:
                    raise
                return index, str(exc)[:500]
        return len(messages), None

    async def _quarantine(self, flag: str, reason: str) -> None:
        """Set aside ``flag``'s oldest outbox message, with an alert.

        No alert when the message set aside was itself an alert: that could loop.
        """
        message = await self._states.quarantine(flag, reason)
        if message is None:
            return
        topic = message.topic or "unreadable"
        self._metrics.quarantined.labels(topic).inc()
        log.error("output_quarantined", flag=flag, topic=topic, reason=reason)
        if message.topic == self._topics.alerts:
            return
        alert = RaiseAlert(
            kind="output_quarantined",
            severity="critical",
            summary=f"a message for {topic} can never be published and was set aside: {reason}",
            details={"topic": topic, "bytes": len(message.value)},
        )
        outbox = render(flag, None, [alert], self._now(), self._topics)
        await self._states.save(flag, StateWrite(rev=-1, rollout=None, outbox=outbox))
