"""Ingest commands: an operator's choice for held events partitions, recorded in Redis.

The command intake hands each ``ingest`` command here, on whichever instance
owns its commands partition. It is verified like every command (its key's roles
must grant ``manage_ingest`` in every environment: the events topic serves them
all), the choice is
recorded on each held partition it names (every held one when it names none),
and the decision is published on the decisions topic: applied with the
partitions, or rejected with the reason. The owner of each partition applies
the choice within a moment (:mod:`controller.daemon.ingest.log_gaps`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

import orjson
import structlog

from controller.adapters.redis import GapStore
from controller.core.machine import IngestCommand, log_gaps
from controller.core.release import Permission
from controller.core.wire import JsonObject
from controller.daemon.registries import Keyring, shared_refusal
from controller.ports import Outputs

log = structlog.get_logger("controller.daemon.rollouts.ingest_commands")


class IngestCommands:
    """Records operators' choices for held events partitions."""

    def __init__(
        self,
        *,
        stores: Mapping[str, GapStore],
        events_topic: str,
        outputs: Outputs,
        keys: Keyring,
        decisions_topic: str,
        max_age_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        """``stores``: where each topic read keeps its held partitions, by topic name."""
        self._stores, self._events = stores, events_topic
        self._outputs, self._keys = outputs, keys
        self._topic, self._max_age, self._now = decisions_topic, max_age_seconds, clock

    async def apply(self, command: IngestCommand, raw: JsonObject) -> None:
        """Verify ``command``, record its choice, publish its decision."""
        now = self._now()
        refused = log_gaps.refusal(
            command, raw, keys=self._keys, now=now, max_age_seconds=self._max_age
        ) or shared_refusal(self._keys, command.key_id, Permission.MANAGE_INGEST)
        result: list[int] | str = refused if refused is not None else await self._choose(command)
        log.warning(
            "ingest_command",
            id=command.id,
            action=command.action,
            actor=command.actor,
            result=result,
        )
        decision = log_gaps.audit(command, result, now_ms=int(now.timestamp() * 1000))
        await self._outputs.publish([(self._topic, log_gaps.AUDIT_FLAG, orjson.dumps(decision))])

    async def _choose(self, command: IngestCommand) -> list[int] | str:
        topic = command.topic or self._events
        store = self._stores.get(topic)
        if store is None:
            return f"topic: {topic!r} is not read here (read: {', '.join(sorted(self._stores))})"
        wanted = log_gaps.chosen(command, await store.held())
        if isinstance(wanted, str):
            return wanted
        done = await store.choose(wanted, command.action, command.id)
        return done or "no events partition is held"
