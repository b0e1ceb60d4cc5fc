"""The command intake: records of the commands and monitors topics, into the rollouts service.

Each record is bounded (:data:`~controller.core.machine.commands.MAX_CONTROL_BYTES`),
parsed, and, when it breaks the contract, dead-lettered. A monitor alert
becomes a monitor input for every flag mapped to that monitor. A command is
authenticated (:mod:`controller.core.machine.commands`: a known operator key and a
valid Ed25519 signature, a timestamp within the freshness window, a command
id not applied before, a plan that can work) and reaches the service as the
command or as its refusal, which the machine records as a rejected decision.
A command applied from the very record read now (a new owner after a
rebalance, a paused instance resuming) was decided then and is skipped: only
the same command sent again, in another record, is refused as a replay. A
segment's command follows the same rule, told the record it was read from.
A segment's command goes to :class:`~controller.daemon.registries.segments.SegmentService`,
an app-key command (``type: "app_key"``) to
:class:`~controller.daemon.registries.app_keys.AppKeyCommands` and an operator's choice for
held events partitions (``type: "ingest"``) to
:class:`~controller.daemon.rollouts.ingest_commands.IngestCommands`, a release
pipeline's start (``type: "pipeline"``) and an ``approve`` of a step a pipeline
has not started to :class:`~controller.daemon.rollouts.pipelines.Pipelines`.
The records fetched are committed once every one was applied.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

import orjson
import structlog
from pydantic import ValidationError

from controller.core.common import StoreError
from controller.core.machine import MAX_CONTROL_BYTES, IngestCommand, Trial, commands, log_gaps
from controller.core.reading import CheckedCommand
from controller.core.release import PipelineCommand, pipeline_command
from controller.core.rollouts import (
    CommandInput,
    CommandRefused,
    MonitorDownInput,
    MonitorUpInput,
    Rollout,
)
from controller.core.trust import AppKeyCommand, app_keys
from controller.core.wire import (
    Command,
    CommandAction,
    JsonObject,
    MonitorAlert,
    SegmentCommand,
    summarize,
)
from controller.daemon.registries import (
    AppKeyCommands,
    Held,
    Keyring,
    SegmentService,
    check_commands,
)
from controller.daemon.rollouts.containment import Containment, Retry
from controller.daemon.rollouts.ingest_commands import IngestCommands
from controller.daemon.rollouts.pipelines import Pipelines
from controller.daemon.rollouts.rollouts import Rollouts, start_refusal
from controller.ports import (
    CommandSeen,
    ControlSource,
    DeadLetter,
    DeadLetters,
    Record,
    RolloutStates,
)
from controller.settings import EngineSettings, TopicSettings

log = structlog.get_logger("controller.daemon.rollouts.commands")


class CommandIntake:
    """Applies the commands and monitor alerts fetched, each through the rollouts service."""

    def __init__(
        self,
        *,
        rollouts: Rollouts,
        states: RolloutStates,
        keys: Keyring,
        dead_letters: DeadLetters,
        contained: Containment,
        retry: Retry,
        stopping: asyncio.Event,
        settings: EngineSettings,
        topics: TopicSettings,
        backends: frozenset[str],
        clock: Callable[[], datetime],
        segments: SegmentService | None = None,
        app_keys: AppKeyCommands | None = None,
        ingest: IngestCommands | None = None,
        pipelines: Pipelines | None = None,
    ) -> None:
        self._rollouts, self._states, self._keys = rollouts, states, keys
        self._app_keys, self._ingest, self._pipelines = app_keys, ingest, pipelines
        self._dead_letters, self._contained, self._retry = dead_letters, contained, retry
        self._stopping = stopping
        self._settings, self._topics = settings, topics
        self._backends, self._now = backends, clock  # flag platforms a plan may name
        self._segments = segments
        self.last_pass = time.monotonic()
        """When the loop last completed a pass (monotonic clock), for readiness."""

    async def run(self, control: ControlSource) -> None:
        """Fetch, apply and commit, until stopping is asked."""
        while not self._stopping.is_set():
            records = await self._retry(lambda: control.fetch(timeout_ms=200), "fetch")
            for record in records or []:
                # Retried until it is applied: commands are deduplicated by id
                # atomically with the state they change, so a retry is safe.
                await self._contained.run(
                    self._retry(lambda r=record: self.handle(r), "command"),  # type: ignore[misc]
                    where="command",
                    record=record,
                )
            if records:
                await control.commit()
            self.last_pass = time.monotonic()

    async def check(self, values: Sequence[bytes]) -> list[CheckedCommand]:
        """Whether each command would be admitted now and applied on the rollouts held, each
        admitted one taken as applied, deciding none
        (:func:`~controller.daemon.registries.check_commands`); raises
        :class:`~controller.core.common.StoreError` when a rollout cannot be read."""
        held: dict[str, Rollout] = {}
        for key, loaded in (await self._states.load_all()).items():
            if isinstance(loaded, StoreError):
                raise loaded
            if loaded.rollout is not None:
                held[key] = loaded.rollout
        return check_commands(
            values,
            keys=self._keys,
            now=self._now(),
            max_age_seconds=self._settings.command_max_age_seconds,
            held=Held(Trial(held), self._backends, self._rollouts.team_windows),
        )

    async def handle(self, record: Record) -> None:
        """One record from the commands or monitors topic.

        Only parsing failures count as bad input (dead-lettered; a message over
        :data:`MAX_CONTROL_BYTES` is not even parsed); an error while acting on
        valid input propagates, so it is retried, never dropped.
        """
        size = len(record.value or b"")
        if size > MAX_CONTROL_BYTES:
            await self._bad_record(record, "oversize", f"{size} bytes > {MAX_CONTROL_BYTES}")
            return
        try:
            alert = record.topic == self._topics.monitors
            app_key = None if alert else app_keys.parsed(record.value or b"")
            ingest = None if alert or app_key else log_gaps.parsed(record.value or b"")
            run = None if alert or app_key or ingest else pipeline_command(record.value or b"")
            plain = app_key is None and ingest is None and run is None
            message = commands.parse(record.value or b"", alert=alert) if plain else None
        except (ValidationError, orjson.JSONDecodeError, ValueError) as exc:
            detail = summarize(exc) if isinstance(exc, ValidationError) else str(exc)
            await self._bad_record(record, "schema_violation", detail)
            return
        if run is not None:
            await self._on_pipeline(record, *run)
        elif app_key is not None:
            await self._on_app_key(record, *app_key)
        elif ingest is not None:
            await self._on_ingest(record, *ingest)
        elif isinstance(message, MonitorAlert):
            await self._on_monitor(message)
        elif message is None:
            return
        elif isinstance(message[0], SegmentCommand):
            if self._segments is None:
                await self._bad_record(record, "not_served", "this controller keeps no segments")
                return
            await self._segments.handle(
                message[0], message[1], keys=self._keys, delivery=_delivery(record)
            )
        else:
            await self._on_command(message[0], message[1], delivery=_delivery(record))

    async def _bad_record(self, record: Record, reason: str, detail: str) -> None:
        log.warning("control_message_rejected", topic=record.topic, reason=reason, detail=detail)
        await self._dead_letters.publish([DeadLetter(record, reason, detail[:500])])

    async def _on_app_key(self, record: Record, command: AppKeyCommand, raw: JsonObject) -> None:
        if self._app_keys is None:  # an engine built without Redis (tests)
            await self._bad_record(record, "unsupported", "app keys are not kept here")
            return
        await self._app_keys.apply(command, raw)

    async def _on_pipeline(self, record: Record, command: PipelineCommand, raw: JsonObject) -> None:
        if self._pipelines is None:  # an engine built without Redis (tests)
            await self._bad_record(record, "unsupported", "pipelines are not run here")
            return
        await self._pipelines.start(command, raw)

    async def _on_ingest(self, record: Record, command: IngestCommand, raw: JsonObject) -> None:
        if self._ingest is None:  # an engine built without Redis (tests)
            await self._bad_record(record, "unsupported", "ingest is not steered here")
            return
        await self._ingest.apply(command, raw)

    async def _on_monitor(self, alert: MonitorAlert) -> None:
        incident = alert.incident_id or alert.id
        flags = self._settings.monitors.get(alert.monitor, [])
        hold = alert.action == "hold"
        log.info("monitor", monitor=alert.monitor, status=alert.status, flags=flags, hold=hold)
        for flag in flags:
            now = self._now()
            event = (
                MonitorDownInput(alert.monitor, incident, now, hold=hold)
                if alert.status == "down"
                else MonitorUpInput(alert.monitor, incident, now)
            )
            await self._rollouts.apply(flag, event)

    async def _on_command(self, command: Command, raw: JsonObject, *, delivery: str) -> None:
        now = self._now()
        flag, refused = commands.where(command, self._keys.environments)
        refused = refused or commands.refusal(
            command,
            raw,
            keys=self._keys,
            now=now,
            max_age_seconds=self._settings.command_max_age_seconds,
        )
        roles = self._keys.roles_of(command.key_id or "")
        refused = refused or commands.role_refusal(command, roles, self._keys.environments)
        approving = commands.approving_roles(roles, command, self._keys.environments)
        if refused is None and await self._pipeline_approval(command, approving):
            return  # a pipeline step's approval, decided with its run
        if refused is None:
            seen = await self._states.seen(flag, command.id, delivery)
            if seen is CommandSeen.REDELIVERED:
                # Decided and published when first read: deciding again would only
                # refuse the command as its own replay.
                log.info("command_redelivered", flag=flag, id=command.id)
                return
            if seen is CommandSeen.REPLAYED:
                refused = commands.REPLAYED
        event = commands.admitted(
            command,
            refused=refused,
            now=now,
            backends=self._backends,
            rollout_id=uuid.uuid4().hex,
            salt=secrets.token_hex(8),
            flag=flag,
            roles=approving,
            holder=self._keys.holder_of(command.key_id or "") or "",
        )
        plan = event.plan if isinstance(event, CommandInput) else None
        broken = await start_refusal(self._states, flag, plan)
        if broken is not None:
            event = commands.refusal_input(command, broken, now, flag=flag)
        if isinstance(event, CommandRefused):
            log.warning("command_rejected", flag=flag, id=command.id, reason=event.reason)
        await self._rollouts.apply(flag, event, delivery=delivery)

    async def _pipeline_approval(self, command: Command, roles: tuple[str, ...]) -> bool:
        """Whether ``command`` approved a step of a pipeline (decided there)."""
        if command.action is not CommandAction.APPROVE or self._pipelines is None:
            return False
        return await self._pipelines.approval(command, roles)


def _delivery(record: Record) -> str:
    """Where ``record`` lies in the topic: the same for every delivery of it, and only it."""
    return f"{record.topic}:{record.partition}:{record.offset}"
