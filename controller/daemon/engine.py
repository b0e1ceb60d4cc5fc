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

The advisor is consulted off the gate loop: a stage ready to advance starts
one consultation for its flag in the background, and the loop goes on gating
every flag, that one included, so a slow model never delays a rollback. When
the advice arrives the stage is evaluated again on fresh aggregates; only if
it is still the same stage and still ready to advance is the advice applied.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
import structlog
from pydantic import ValidationError

from controller.backoff import Backoff, retrying, sleep_or_stop
from controller.core import signing
from controller.core.advice import Unavailable
from controller.core.aggregates import FlagAggregates
from controller.core.decoding import RejectReason, summarize
from controller.core.errors import ConfigError, ControllerError
from controller.core.gate import describe, evaluate
from controller.core.machine import step
from controller.core.messages import (
    Command,
    CommandAction,
    MonitorAlert,
)
from controller.core.plan import parse_plan
from controller.core.rollout import (
    Action,
    CommandInput,
    GateInput,
    Input,
    MonitorDownInput,
    MonitorUpInput,
    Phase,
    PublishFlagState,
    RaiseAlert,
    RecordDecision,
    Rollout,
    TickInput,
    Verdict,
    VerdictKind,
)
from controller.core.timestamps import as_datetime
from controller.daemon.metrics import Metrics
from controller.daemon.rendering import render, render_alert
from controller.ports import (
    Advisor,
    AggregateReader,
    ControlSource,
    DeadLetter,
    DeadLetters,
    OutboxMessage,
    Outputs,
    Record,
    RolloutStates,
    SaveOutcome,
    StateWrite,
)
from controller.settings import EngineSettings, LlmSettings, TopicSettings

log = structlog.get_logger("controller.daemon.engine")
MAX_CONTROL_BYTES = 256 * 1024
"""The largest command or monitor alert read; a plan fits in far less."""
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
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._states = states
        self._aggregates = aggregates
        self._outputs = outputs
        self._dead_letters = dead_letters
        self._now = clock
        self._metrics = metrics or Metrics()
        self._llm = llm or LlmSettings()
        self._advisor = advisor if self._llm.mode != "off" else None
        self._advisor_down = False
        self._keys = {k: signing.load_public_key(v) for k, v in settings.operator_keys.items()}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Last aggregates read per flag, with the stage they belong to.
        self._seen: dict[str, tuple[tuple[str, int, frozenset[int]], FlagAggregates]] = {}
        self._stopping = asyncio.Event()
        self._consulting: dict[str, asyncio.Task[None]] = {}
        self._failing: set[str] = set()
        self.last_gate_pass = self.last_control_pass = time.monotonic()
        """When each loop last completed a pass (monotonic clock), for readiness."""

    def stop(self) -> None:
        self._stopping.set()

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
            # A consultation cut short loses nothing: the next gate asks again.
            for task in self._consulting.values():
                task.cancel()
            await asyncio.gather(*self._consulting.values(), return_exceptions=True)

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
            full = now - last_sweep >= sweep
            passed = self._retrying(lambda f=full: self._gate_pass(control, full=f), "gates")  # type: ignore[misc]
            # A pass that fails for good (a damaged key every pass reads) is
            # reported once and tried again; /readyz shows the loop stalled.
            if await self._contained(passed, where="gate pass"):
                self._failing.discard("gate pass")
                last_sweep = now if full else last_sweep

    async def _gate_pass(self, control: ControlSource, *, full: bool) -> bool:
        dirty = await self._aggregates.pop_dirty()
        theirs = {f for f in dirty if not control.owns(f)}
        if theirs:  # another instance gates these: leave the news for it
            await self._aggregates.mark_dirty(theirs)
        mine = dirty - theirs
        swept = {f for f in await self._states.flags() if control.owns(f)} if full else set()
        for flag in sorted(mine | swept):
            if await self._contained(
                self.gate(flag, fresh=flag in mine, background=True), where="gate", flag=flag
            ):
                self._failing.discard(flag)
        self.last_gate_pass = time.monotonic()
        return True

    async def _contained(
        self,
        work: Awaitable[object],
        *,
        where: str,
        flag: str | None = None,
        record: Record | None = None,
    ) -> bool:
        """Run ``work``; a failure that retrying cannot fix stays with its one input.

        A retriable error propagates (the loop backs off and tries again); any
        other error is logged with its traceback, counted and alerted, and a
        record is dead-lettered with the reason, so one bad command or one
        damaged flag never stops the commands and gates of every other flag.
        Returns whether ``work`` succeeded.
        """
        try:
            await work
        except ControllerError as exc:
            if exc.retriable:
                raise
            await self._failed(exc, where=where, flag=flag, record=record)
            return False
        except Exception as exc:  # confined to this one input, and reported
            await self._failed(exc, where=where, flag=flag, record=record)
            return False
        return True

    async def _failed(
        self, exc: Exception, *, where: str, flag: str | None, record: Record | None
    ) -> None:
        why = f"{type(exc).__name__}: {exc}"[:500]
        self._metrics.contained.labels(where).inc()
        log.error("input_failed", where=where, flag=flag, error=why, exc_info=exc)
        if record is not None:
            letter = DeadLetter(record, RejectReason.PROCESSING_ERROR.value, why)
            await self._retrying(lambda: self._dead_letters.publish([letter]), "dead-letter")
        elif (flag or where) in self._failing:
            return  # one alert per flag (or loop) until it works again
        else:
            self._failing.add(flag or where)
        summary = f"{where} failed and was set aside: {why}"
        await self._alert_now(flag if record is None else None, summary, {"where": where})

    async def _alert_now(self, flag: str | None, summary: str, details: dict[str, Any]) -> None:
        """Publish an ``input_failed`` alert straight away, not through an outbox.

        Used when the flag's own state may be what failed; a broker that
        refuses it for good is only logged, so reporting cannot loop.
        """
        action = RaiseAlert("input_failed", "critical", summary[:500], details)
        message = render_alert(flag, action, self._now(), self._topics)
        try:
            await self._retrying(
                lambda: self._outputs.publish([(message.topic, message.key, message.value)]),
                "alert",
            )
        except ControllerError as exc:
            log.warning("alert_not_published", error=str(exc)[:500])

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
            return
        data = await self._stage_data(flag, rollout, fresh=fresh)
        now = self._now()
        verdict = evaluate(rollout, data, now)
        events: list[Input] = [TickInput(now)]
        if not self._needs_advice(rollout, verdict, now):
            events.insert(0, GateInput(verdict, now))
        elif background:
            self._consult(flag, rollout, verdict, now)
        else:
            events.insert(0, await self._with_advice(rollout, verdict, now))
        for event in events:
            new, actions = step(rollout, event)
            if actions or new != rollout:
                await self.apply(flag, event)

    def _needs_advice(self, rollout: Rollout, verdict: Verdict, now: datetime) -> bool:
        """Only a running stage the statistics would advance asks the model.

        Rollbacks, pauses and holds never wait for it; a paused rollout or one
        the advisor holds would not act on the advice, so it is not asked.
        """
        if self._advisor is None or rollout.phase is not Phase.RUNNING:
            return False
        held = rollout.advisor_hold_until is not None and now < rollout.advisor_hold_until
        return verdict.kind is VerdictKind.ADVANCE and not held

    def _consult(self, flag: str, rollout: Rollout, verdict: Verdict, now: datetime) -> None:
        """Ask the advisor in the background, unless a consultation for ``flag`` runs."""
        running = self._consulting.get(flag)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(
            self._advise_then_gate(flag, rollout, verdict, now), name=f"advise-{flag}"
        )
        self._consulting[flag] = task
        task.add_done_callback(lambda t, f=flag: self._consulted(f, t))  # type: ignore[misc]

    async def consultations_done(self) -> None:
        """Wait until every consultation under way has been applied or dropped."""
        await asyncio.gather(*list(self._consulting.values()), return_exceptions=True)

    def _consulted(self, flag: str, task: asyncio.Task[None]) -> None:
        if self._consulting.get(flag) is task:
            del self._consulting[flag]

    async def _advise_then_gate(
        self, flag: str, asked: Rollout, verdict: Verdict, now: datetime
    ) -> None:
        """Get the advice, then apply it if the stage is still ready to advance.

        Outdated advice is dropped, but an outage it revealed is still alerted.
        """
        gate = await self._with_advice(asked, verdict, now)
        try:
            fresh = await self._recheck(flag, asked)
            if fresh.kind is not VerdictKind.ADVANCE:
                log.info("advice_outdated", flag=flag, reason=fresh.reason)
            await self.apply(flag, dataclasses.replace(gate, verdict=fresh, now=self._now()))
        except Exception as exc:  # a background task: log it; the next gate pass asks again
            log.warning("advice_not_applied", flag=flag, error=repr(exc)[:500])
            if gate.advisor_alert:  # not published: let the next failure alert instead
                self._advisor_down = False

    async def _recheck(self, flag: str, asked: Rollout) -> Verdict:
        """The stage's verdict on fresh aggregates if it is still ready to advance.

        Otherwise a hold saying why the advice no longer applies: a hold changes
        nothing, yet the machine still raises an outage alert the advice carries.
        """
        rollout = (await self._states.load(flag)).rollout
        if rollout is None or _stage_key(rollout) != _stage_key(asked):
            return Verdict(VerdictKind.HOLD, "the stage changed meanwhile")
        data = await self._aggregates.read(flag, rollout.stage_flag_versions())
        fresh = evaluate(rollout, data, self._now())
        if fresh.kind is not VerdictKind.ADVANCE:
            return Verdict(VerdictKind.HOLD, f"the gate now says {fresh.kind}")
        return fresh

    async def status(self, flag: str | None = None) -> list[dict[str, Any]]:
        """Each rollout (or ``flag``'s) as :func:`describe` shows it, with a fresh gate view.

        Read-only: the verdict is computed, never applied, and the advisor is
        not asked.
        """
        flags = [flag] if flag is not None else sorted(await self._states.flags())
        now, out = self._now(), []
        for name in flags:
            rollout = (await self._states.load(name)).rollout
            if rollout is None:
                continue
            verdict = None
            if rollout.phase.active:
                data = await self._aggregates.read(name, rollout.stage_flag_versions())
                verdict = evaluate(rollout, data, now)
            out.append(describe(rollout, verdict, now))
        return out

    async def _with_advice(self, rollout: Rollout, verdict: Verdict, now: datetime) -> GateInput:
        """The gate input, with the advisor's result when the statistics say advance.

        The advisor is never asked about a rollback, a pause or a hold: those
        never wait for it. An outage raises one alert, not one per gate: the
        first failure after a success (or since start) carries ``advisor_alert``,
        which the machine turns into an alert whatever it does with the verdict;
        the next success ends the outage.
        """
        if self._advisor is None or not self._needs_advice(rollout, verdict, now):
            return GateInput(verdict, now)
        advice = await self._advisor.advise(_gate_data(rollout, verdict, now))
        down = isinstance(advice, Unavailable)
        first_failure, self._advisor_down = down and not self._advisor_down, down
        if isinstance(advice, Unavailable):
            self._metrics.advisor_failures.inc()
            log.warning("advisor_unavailable", flag=rollout.flag, cause=advice.cause)
        else:
            self._metrics.advisor_seconds.observe(advice.latency_ms / 1000)
        return GateInput(
            verdict,
            now,
            advice=advice,
            advisor_mode=self._llm.mode,
            advisor_hold=timedelta(seconds=self._llm.hold_seconds),
            advisor_alert=first_failure,
        )

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
            message = self._parse(record)
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

    def _parse(self, record: Record) -> MonitorAlert | tuple[Command, dict[str, Any]]:
        if record.topic == self._topics.monitors:
            return MonitorAlert.model_validate_json(record.value or b"")
        raw = orjson.loads(record.value or b"")
        if not isinstance(raw, dict):
            raise ValueError("a command must be a JSON object")  # noqa: TRY004 - bad input
        return Command.model_validate(raw), raw

    async def _on_monitor(self, alert: MonitorAlert) -> None:
        incident = alert.incident_id or alert.id
        flags = self._settings.monitors.get(alert.monitor, [])
        log.info("monitor", monitor=alert.monitor, status=alert.status, flags=flags)
        kind = MonitorDownInput if alert.status == "down" else MonitorUpInput
        for flag in flags:
            await self.apply(flag, kind(alert.monitor, incident, self._now()))

    async def _on_command(self, command: Command, raw: dict[str, Any]) -> None:
        now = self._now()
        refusal = await self._refusal(command, raw, now)
        plan = None
        if refusal is None and command.plan is not None:
            try:
                plan = parse_plan(command.plan, source="plan")
            except ConfigError as exc:
                refusal = str(exc)
        if refusal is not None:
            log.warning("command_rejected", flag=command.flag, id=command.id, reason=refusal)
            await self._reject(command, refusal, now)
            return
        await self.apply(command.flag, _command_input(command, plan, now))

    async def _refusal(self, command: Command, raw: dict[str, Any], now: datetime) -> str | None:
        """Why the command may not run, or None: signature, freshness, replay."""
        if command.sig is None or command.key_id is None:
            return "unsigned command"
        key = self._keys.get(command.key_id)
        if key is None:
            return f"unknown key id {command.key_id!r}"
        if not signing.verify(raw, key):
            return "bad signature"
        age = abs((now - as_datetime(command.ts)).total_seconds())
        if age > self._settings.command_max_age_seconds:
            limit = self._settings.command_max_age_seconds
            return f"stale command: {age:.0f}s from now, limit {limit:.0f}s"
        if await self._states.applied(command.flag, command.id):
            return "replayed command id"
        return None

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
            evidence={"actor": command.actor, "key_id": command.key_id},
        )
        async with self._locks[command.flag]:
            self._count(command.flag, state, [decision])
            outbox = render(command.flag, state, [decision], now, self._topics)
            await self._states.save(command.flag, StateWrite(rev=-1, rollout=None, outbox=outbox))
            await self._drain(command.flag, locked=True)

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
                    self._count(flag, new, actions)
                await self._drain(flag, locked=True)
                return
            raise ControllerError(f"{flag}: could not save after 10 compare-and-set conflicts")

    def _count(self, flag: str, rollout: Rollout | None, actions: list[Action]) -> None:
        for action in actions:
            _log_action(flag, action)
            if isinstance(action, RecordDecision):
                self._metrics.decisions.labels(action.action, action.outcome).inc()
            elif isinstance(action, PublishFlagState) and rollout is not None:
                self._metrics.percent.labels(flag).set(rollout.percent)

    async def _drain(self, flag: str, *, locked: bool = False) -> None:
        if not locked:
            async with self._locks[flag]:
                await self._drain(flag, locked=True)
            return
        pending = await self._states.pending(flag)
        while pending:
            sent, refusal = await self._publish(pending)
            if sent:
                await self._states.published(flag, sent)
            if refusal is None:
                return
            await self._quarantine(flag, refusal)
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
        for index, m in enumerate(messages[:readable]):
            try:
                await self._outputs.publish([(m.topic, m.key, m.value)])
            except ControllerError as exc:
                if exc.retriable:
                    raise
                return index, str(exc)[:500]
        return readable, None

    async def _quarantine(self, flag: str, reason: str) -> None:
        """Set aside ``flag``'s oldest outbox message, which can never be published.

        Its later messages (a kill above all) then go out. An alert says so,
        unless the message set aside was itself an alert: that could loop.
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


def _command_input(command: Command, plan: Any, now: datetime) -> CommandInput:
    return CommandInput(
        action=command.action,
        flag=command.flag,
        command_id=command.id,
        actor=command.actor,
        now=now,
        reason=command.reason,
        plan=plan,
        to_end=command.to_end,
        new_rollout_id=uuid.uuid4().hex,
        new_salt=secrets.token_hex(8),
    )


def _gate_data(rollout: Rollout, verdict: Verdict, now: datetime) -> dict[str, Any]:
    """What the advisor is shown: the gate's numbers and, as untrusted text, names."""
    return {
        "flag": rollout.flag,
        "plan": rollout.plan.name,
        "operator_reason": rollout.note,
        "stage": rollout.stage,
        "stages": len(rollout.plan.stages),
        "percent": rollout.percent,
        "next_percent": rollout.plan.stages[
            min(rollout.stage + 1, len(rollout.plan.stages) - 1)
        ].percent,
        "time_in_stage_s": round((now - rollout.stage_started_at).total_seconds()),
        "statistical_verdict": verdict.kind.value,
        "statistical_reason": verdict.reason,
        "evidence": verdict.evidence,
    }


def _stage_key(rollout: Rollout) -> tuple[str, int, int]:
    """Which stage, of which rollout, under which flag version: changes with any transition."""
    return rollout.rollout_id, rollout.stage, rollout.flag_version


def _log_action(flag: str, action: Action) -> None:
    if isinstance(action, RecordDecision):
        log.info(
            "decision",
            flag=flag,
            action=action.action,
            outcome=action.outcome,
            reason=action.reason,
            phase=action.phase_after,
            stage=action.stage,
        )
    elif isinstance(action, RaiseAlert):
        log.warning("alert", flag=flag, kind=action.kind, summary=action.summary)


__all__ = ["CommandAction", "Engine"]
