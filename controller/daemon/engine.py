"""The rollout engine: commands, monitor alerts and gates, around the pure core.

For every input the order is the same (an outbox; see docs/architecture.md,
*Exactly once*):

1. load the flag's rollout and its revision;
2. decide: ``machine.step(state, input) -> (new_state, actions)``;
3. save the new state and the messages its actions imply in one atomic
   compare-and-set (a conflict reloads and decides again);
4. publish the saved messages and wait for the broker; only then drop them
   from the outbox. A crash between 3 and 4 republishes them at start-up;
   consumers deduplicate by message id.

Commands are authenticated before they reach the machine: a known operator key
and a valid Ed25519 signature, a timestamp within the freshness window, and a
command id not seen before. A refused command changes nothing and is
published as a rejected decision with its reason. Gates run for the flags
whose commands partition this instance owns: those that received events
since the last pass every ``gate_interval_seconds``, and all active ones every
``sweep_interval_seconds`` (timers, minimum durations).

The parts: :mod:`~controller.daemon.control` parses and authenticates
commands, :mod:`~controller.daemon.consulting` asks the advisor off the gate
loop, :mod:`~controller.daemon.outbox` publishes, and
:mod:`~controller.daemon.containment` confines what fails for good.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
import structlog
from pydantic import ValidationError

from controller.backoff import Backoff, sleep_or_stop
from controller.core.aggregates import FlagAggregates
from controller.core.decoding import summarize
from controller.core.errors import ConfigError, ControllerError
from controller.core.gate import evaluate
from controller.core.machine import step
from controller.core.messages import Command, MonitorAlert
from controller.core.rollout import (
    CommandInput,
    GateInput,
    Input,
    MonitorDownInput,
    MonitorUpInput,
    Phase,
    RecordDecision,
    Rollout,
    TickInput,
)
from controller.core.views import RolloutStatus
from controller.core.wording import at_stage
from controller.daemon import control
from controller.daemon.consulting import Consultations
from controller.daemon.containment import Containment
from controller.daemon.control import MAX_CONTROL_BYTES
from controller.daemon.history import Recorder
from controller.daemon.keyring import Keyring
from controller.daemon.metrics import Metrics
from controller.daemon.outbox import Outbox
from controller.daemon.rendering import render
from controller.daemon.status import StatusView
from controller.ports import (
    Advisor,
    AggregateReader,
    ControlSource,
    DeadLetter,
    DeadLetters,
    Outputs,
    Record,
    RolloutStates,
    SaveOutcome,
    StateWrite,
)
from controller.retrying import retrying
from controller.settings import EngineSettings, HistorySettings, LlmSettings, TopicSettings

log = structlog.get_logger("controller.daemon.engine")
T = TypeVar("T")
Clock = Callable[[], datetime]


class Engine:
    """Applies commands, monitor alerts and gate verdicts to rollouts, and publishes them."""

    def __init__(
        self,
        *,
        settings: EngineSettings,
        topics: TopicSettings,
        states: RolloutStates,
        aggregates: AggregateReader,
        outputs: Outputs,
        dead_letters: DeadLetters,
        llm: LlmSettings | None = None,
        advisor: Advisor | None = None,
        metrics: Metrics | None = None,
        history: Recorder | None = None,
        clock: Clock = lambda: datetime.now(UTC),
        backends: frozenset[str] = frozenset(),
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._states = states
        self._aggregates = aggregates
        self._outputs = outputs
        self._dead_letters = dead_letters
        self._now, self._backends = clock, backends  # flag platforms a plan may name
        self._stale_after = timedelta(days=settings.stale_after_days)
        self._metrics = metrics or Metrics()
        off = HistorySettings(enabled=False)
        self._history = history or Recorder(store=None, settings=off, topics=topics)
        self._status = StatusView(
            states=states, aggregates=aggregates, stale_after=self._stale_after, clock=clock
        )
        self.keys = Keyring(settings.operator_keys)  # reloaded on SIGHUP (keyring.py)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Last aggregates read per flag, with the stage they belong to.
        self._seen: dict[str, tuple[tuple[str, int, frozenset[int]], FlagAggregates]] = {}
        self._stopping = asyncio.Event()
        self._sweep_now = False
        self._consultations = Consultations(
            advisor=advisor,
            llm=llm or LlmSettings(),
            metrics=self._metrics,
            states=states,
            aggregates=aggregates,
            apply=self.apply,
            clock=clock,
        )
        self._outbox = Outbox(
            states=states, outputs=outputs, topics=topics, metrics=self._metrics, clock=clock
        )
        self._contained = Containment(
            metrics=self._metrics,
            outputs=outputs,
            dead_letters=dead_letters,
            topics=topics,
            clock=clock,
            retry=self._retrying,
        ).run
        self.last_gate_pass = self.last_control_pass = time.monotonic()
        """When each loop last completed a pass (monotonic clock), for readiness."""

    def stop(self) -> None:
        self._stopping.set()

    def sweep_soon(self) -> None:
        """Gate every owned flag at the next pass: commands partitions were just assigned."""
        self._sweep_now = True

    # -- loops ---------------------------------------------------------------------

    async def run(self, *, control: ControlSource) -> None:
        """Republish what a crash left in outboxes, then serve commands and gates."""
        for flag in await self._states.flags():
            await self._contained(self._drain(flag), where="drain", flag=flag)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._control_loop(control), name="engine-control")
                tasks.create_task(self._gate_loop(control), name="engine-gates")
        finally:
            await self._consultations.cancel()

    async def _control_loop(self, control: ControlSource) -> None:
        while not self._stopping.is_set():
            records = await self._retrying(lambda: control.fetch(timeout_ms=200), "fetch")
            for record in records or []:
                # Retried until it is applied: commands are deduplicated by id
                # atomically with the state they change, so a retry is safe.
                await self._contained(
                    self._retrying(lambda r=record: self.handle(r), "command"),  # type: ignore[misc]
                    where="command",
                    record=record,
                )
            if records:
                await control.commit()
            self.last_control_pass = time.monotonic()

    async def _gate_loop(self, control: ControlSource) -> None:
        last_sweep = datetime.min.replace(tzinfo=UTC)
        sweep = timedelta(seconds=self._settings.sweep_interval_seconds)
        while not await sleep_or_stop(self._settings.gate_interval_seconds, self._stopping):
            now = self._now()
            full, self._sweep_now = self._sweep_now or now - last_sweep >= sweep, False
            passed = self._retrying(lambda f=full: self._gate_pass(control, full=f), "gates")  # type: ignore[misc]
            # A pass that fails for good (a damaged key every pass reads) is
            # reported once and tried again; /readyz shows the loop stalled.
            if await self._contained(passed, where="gate pass"):
                last_sweep = now if full else last_sweep

    async def _gate_pass(self, control: ControlSource, *, full: bool) -> bool:
        for flag in sorted(self._outbox.undrained):  # saved, then not published
            await self._contained(self._drain(flag), where="drain", flag=flag)
        dirty = await self._aggregates.pop_dirty()
        theirs = {f for f in dirty if not control.owns(f)}
        if theirs:  # another instance gates these: leave the news for it
            await self._aggregates.mark_dirty(theirs)
        mine = dirty - theirs
        swept = {f for f in await self._states.flags() if control.owns(f)} if full else set()
        if full:  # the flags this instance no longer gates are another's to report
            self._metrics.guardrails.retain(swept)
        for flag in sorted(mine | swept):
            await self._contained(
                self.gate(flag, fresh=flag in mine, background=True), where="gate", flag=flag
            )
        self.last_gate_pass = time.monotonic()
        return True

    async def _retrying(self, call: Callable[[], Awaitable[T]], what: str) -> T | None:
        """Run ``call``, backing off while it fails retriably; None if stopped first."""
        backoff = Backoff(initial=0.1, maximum=5.0, stopping=self._stopping)
        return await retrying(call, what=what, backoff=backoff)

    # -- inputs --------------------------------------------------------------------

    async def gate(self, flag: str, *, fresh: bool = True, background: bool = False) -> None:
        """Evaluate the flag's current stage and apply the verdict and the timers.

        ``fresh=False`` (a timer sweep of a flag with no new events) may reuse the
        aggregates read last time for the same stage: they cannot have changed.
        Most gates hold, so the decision is first taken on the state just loaded
        and only a change goes through :meth:`apply` (lock, reload, save).
        With ``background``, a verdict that needs the advisor starts a
        consultation and returns at once; otherwise the model is awaited here.
        """
        rollout = (await self._states.load(flag)).rollout
        if rollout is None or not rollout.phase.active:
            self._seen.pop(flag, None)
            self._history.forget(flag)
            self._metrics.guardrails.forget(flag)
            if rollout is not None and rollout.phase is Phase.COMPLETED:
                await self._remind_stale(flag, rollout)
            return
        data = await self._stage_data(flag, rollout, fresh=fresh)
        now = self._now()
        verdict = evaluate(rollout, data, now)
        self._metrics.guardrails.record(flag, verdict, max_flags=self._settings.max_flag_series)
        await self._history.gate(flag, rollout, verdict, now)
        events: list[Input] = [TickInput(now, self._stale_after)]
        if not self._consultations.needs_advice(rollout, verdict, now):
            events.insert(0, GateInput(verdict, now))
        elif background:
            self._consultations.start(flag, rollout, verdict, now)
        else:
            events.insert(0, await self._consultations.with_advice(rollout, verdict, now))
        for event in events:
            new, actions = step(rollout, event)
            if actions or new != rollout:
                await self.apply(flag, event)

    async def _remind_stale(self, flag: str, rollout: Rollout) -> None:
        """A completed flag's one reminder, once it is stale."""
        tick = TickInput(self._now(), self._stale_after)
        new, actions = step(rollout, tick)
        if actions or new != rollout:
            await self.apply(flag, tick)

    async def consultations_done(self) -> None:
        """Wait until every consultation under way has been applied or dropped."""
        await self._consultations.done()

    async def status(self, flag: str | None = None) -> list[RolloutStatus]:
        """Each rollout (or ``flag``'s) with a fresh, read-only gate view (see StatusView)."""
        return await self._status(flag)

    async def _stage_data(self, flag: str, rollout: Rollout, *, fresh: bool) -> FlagAggregates:
        versions = rollout.stage_flag_versions()
        stage = (rollout.rollout_id, rollout.stage, frozenset(versions))
        cached = self._seen.get(flag)
        if not fresh and cached is not None and cached[0] == stage:
            return cached[1]
        data = await self._aggregates.read(flag, versions)
        self._seen[flag] = (stage, data)
        return data

    async def handle(self, record: Record) -> None:
        """One record from the commands or monitors topic.

        Only parsing failures count as bad input (dead-lettered; a message over
        :data:`MAX_CONTROL_BYTES` is not even parsed); an error while acting on
        valid input propagates, so it is retried, never dropped.
        """
        size = len(record.value or b"")
        if size > MAX_CONTROL_BYTES:
            await self._reject_record(record, "oversize", f"{size} bytes > {MAX_CONTROL_BYTES}")
            return
        try:
            message = control.parse(record, monitors_topic=self._topics.monitors)
        except (ValidationError, orjson.JSONDecodeError, ValueError) as exc:
            detail = summarize(exc) if isinstance(exc, ValidationError) else str(exc)
            await self._reject_record(record, "schema_violation", detail)
            return
        if isinstance(message, MonitorAlert):
            await self._on_monitor(message)
        else:
            await self._on_command(*message)

    async def _reject_record(self, record: Record, reason: str, detail: str) -> None:
        log.warning("control_message_rejected", topic=record.topic, reason=reason, detail=detail)
        await self._dead_letters.publish([DeadLetter(record, reason, detail[:500])])

    async def _on_monitor(self, alert: MonitorAlert) -> None:
        incident = alert.incident_id or alert.id
        flags = self._settings.monitors.get(alert.monitor, [])
        log.info("monitor", monitor=alert.monitor, status=alert.status, flags=flags)
        kind = MonitorDownInput if alert.status == "down" else MonitorUpInput
        for flag in flags:
            await self.apply(flag, kind(alert.monitor, incident, self._now()))

    async def _on_command(self, command: Command, raw: dict[str, Any]) -> None:
        now = self._now()
        refusal = control.refusal(
            command,
            raw,
            keys=self.keys,
            now=now,
            max_age_seconds=self._settings.command_max_age_seconds,
        )
        if refusal is None and await self._states.applied(command.flag, command.id):
            refusal = "replayed command id"
        plan = None
        if refusal is None and command.plan is not None:
            try:
                plan = control.plan(command.plan, backends=self._backends)
            except ConfigError as exc:
                refusal = str(exc)
        if refusal is not None:
            log.warning("command_rejected", flag=command.flag, id=command.id, reason=refusal)
            await self._reject(command, refusal, now)
            return
        await self.apply(command.flag, control.command_input(command, plan, now))

    async def _reject(self, command: Command, reason: str, now: datetime) -> None:
        loaded = await self._states.load(command.flag)
        state = loaded.rollout
        decision = RecordDecision(
            kind="command",
            action=command.action.value,
            outcome="rejected",
            reason=reason,
            phase_before=state.phase.value if state else None,
            phase_after=state.phase.value if state else None,
            stage=state.stage if state else None,
            command_id=command.id,
            evidence={"actor": command.actor, "key_id": command.key_id, **at_stage(state)},
        )
        async with self._locks[command.flag]:
            self._metrics.count_actions(command.flag, state, [decision])
            outbox = render(command.flag, state, [decision], now, self._topics)
            await self._states.save(command.flag, StateWrite(rev=-1, rollout=None, outbox=outbox))
            await self._drain(command.flag, locked=True)
            if state is not None:  # no history for flags that never had a rollout
                await self._history.published(command.flag, outbox)

    # -- decide, save, publish -------------------------------------------------------

    async def apply(self, flag: str, event: Input) -> None:
        """Decide ``event`` for ``flag``, save the result with its outbox, publish it."""
        command_id = event.command_id if isinstance(event, CommandInput) else None
        keep_ms = int(self._settings.command_max_age_seconds * 2000)
        async with self._locks[flag]:
            for _ in range(10):
                loaded = await self._states.load(flag)
                new, actions = step(loaded.rollout, event)
                if not actions and new == loaded.rollout:
                    return
                write = StateWrite(
                    rev=loaded.rev,
                    rollout=None if new == loaded.rollout else new,
                    outbox=render(flag, new, actions, event.now, self._topics),
                    command_id=command_id,
                    now_ms=int(event.now.timestamp() * 1000),
                    keep_ms=keep_ms,
                )
                outcome = await self._states.save(flag, write)
                if outcome is SaveOutcome.CONFLICT:
                    continue
                if outcome is SaveOutcome.SAVED:
                    self._metrics.count_actions(flag, new, actions)
                await self._drain(flag, locked=True)
                if outcome is SaveOutcome.SAVED:  # after publishing: history never delays it
                    await self._history.published(flag, write.outbox)
                return
            raise ControllerError(f"{flag}: could not save after 10 compare-and-set conflicts")

    async def _drain(self, flag: str, *, locked: bool = False) -> None:
        if not locked:
            async with self._locks[flag]:
                await self._outbox.drain(flag)
            return
        await self._outbox.drain(flag)
