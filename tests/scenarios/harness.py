"""Given/when/then harness for whole rollouts: the real daemon, broker and Redis.

A :class:`Scenario` owns one test's topics and key namespace, runs the
controller as a child process, signs commands with its own operator key,
simulates apps that follow ``rollout.flag-state`` and assign arms with the
shared bucketing function, and records everything published on the
decisions, alerts and flag-state topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.adapters.redis.aggregates import connect
from controller.adapters.redis.rollouts import RolloutStore
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.rollouts.rollout import Rollout
from controller.core.trust import signing
from controller.core.wire import sent_object
from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm
from controller.ctl.operate.commands import encode_command, signed_model
from controller.ctl.operate.pipelines import command_of as pipeline_command_of
from controller.settings import RedisSettings
from tests.support.backing.topics import fresh_topics
from tests.support.controller_process import ControllerProcess, controller_env
from tests.support.waiting import eventually

KEY_ID = "ops-test"

PERCENTS = (1, 5, 25, 50, 100)
TOPICS = ("commands", "monitors", "flag_state", "segments", "decisions", "alerts", "dlq")
"""A scenario's topics besides ``events``."""


async def scenario_topics(
    topic_factory: Callable[..., Awaitable[str]], *, commands_partitions: int = 2
) -> dict[str, str]:
    """Fresh topics for one :class:`Scenario`, so scenarios never see each other's messages.

    Events get 4 partitions, commands ``commands_partitions``, the rest 1.
    """
    topics = {"events": await topic_factory("events", partitions=4)}
    for name in TOPICS:
        partitions = commands_partitions if name == "commands" else 1
        topics[name] = await topic_factory(name, partitions=partitions)
    return topics


async def topics_on(
    bootstrap: str, tag: str, *, events: int = 4, commands: int = 2
) -> dict[str, str]:
    """A scenario's topics made new on ``bootstrap`` (one of the brokers a test runs on, where
    the session's topic factory serves one), named ``t-<tag>-<topic>-<random>``: ``events``
    partitions for the events, ``commands`` for the commands, one for each other topic."""
    partitions = {"events": events, "commands": commands} | dict.fromkeys(TOPICS[1:], 1)
    return await fresh_topics(bootstrap, tag, partitions)


def fast_plan(*, hold_stage: int | None = None) -> Plan:
    """The default ladder with seconds instead of hours; ``hold_stage`` lasts a minute."""
    return Plan(
        stages=[
            Stage(
                percent=p,
                min_duration=timedelta(seconds=60 if i == hold_stage else (0 if p == 100 else 2)),
                min_units_per_arm=0 if p == 100 else 20,
            )
            for i, p in enumerate(PERCENTS)
        ],
        guardrails=[Guardrail(metric="error_rate")],
        # The suite runs some thirty healthy rollouts of this plan, and any one rolled back
        # or paused fails its test. Each stage's final look spends its share of alpha in
        # full: at 0.01, 1 of 2,000 simulated rollouts of this traffic (3,000 events/s,
        # 2% errors in both arms) was rolled back at the 50% stage's look, and 1 paused on
        # the split at the default 0.001; at these levels none of the same 2,000 was. The
        # regressions scenarios run on this plan fail 30% of treatment requests against 2%,
        # far past either level.
        alpha=0.001,
        srm_p_threshold=0.0001,
    )


def manual_plan() -> Plan:
    """Stages that never advance by themselves within a test: only commands move it."""
    return Plan(
        name="by-hand",
        stages=[
            Stage(percent=p, min_duration=timedelta(minutes=10), min_units_per_arm=0)
            for p in (1, 5, 25, 100)
        ],
        guardrails=[Guardrail(metric="error_rate")],
    )


# Error probability of a request, given the flag state the app acts on and the arm.
ErrorModel = Callable[[dict[str, Any], Arm], float]


def healthy(_state: dict[str, Any], _arm: Arm) -> float:
    return 0.02


# Error probability of a request, given the flag state, the arm and the request's unit: units
# that fail together (a broken account fails most of its own requests).
UnitErrorModel = Callable[[dict[str, Any], Arm, str], float]


# A request's latency in ms, given the arm and the app's random source.
LatencyModel = Callable[[Arm, random.Random], float]


def steady_latency(_arm: Arm, rng: random.Random) -> float:
    return rng.lognormvariate(3, 0.3)


@dataclass
class Observed:
    """Everything the controller published, in order."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    flag_states: list[dict[str, Any]] = field(default_factory=list)

    def decision_where(self, **match: Any) -> dict[str, Any] | None:
        return next((d for d in self.decisions if _matches(d, match)), None)

    def alert_where(self, **match: Any) -> dict[str, Any] | None:
        return next((a for a in self.alerts if _matches(a, match)), None)


def _matches(message: dict[str, Any], match: dict[str, Any]) -> bool:
    return all(message.get(k) == v for k, v in match.items())


class Scenario:
    """One rollout world: topics, daemon, operator, apps and observers."""

    def __init__(
        self, *, bootstrap: str, redis_url: str, prefix: str, topics: dict[str, str], workdir: Path
    ) -> None:
        self.bootstrap, self.redis_url, self.prefix = bootstrap, redis_url, prefix
        self.topics = topics
        self.key: Ed25519PrivateKey = Ed25519PrivateKey.generate()
        self.observed = Observed()
        self.monitors: dict[str, list[str]] = {}
        self._extra: dict[str, str] = {}
        self._args: tuple[str, ...] = ()
        self.daemon = ControllerProcess(env=self._env(), log_path=workdir / "controller.log")
        self._tasks: list[asyncio.Task[None]] = []
        self._states: dict[str, dict[str, Any]] = {}
        self._producer: AIOKafkaProducer | None = None
        self.events_sent = 0

    def _env(self) -> dict[str, str]:
        env = controller_env(
            bootstrap=self.bootstrap,
            redis_url=self.redis_url,
            prefix=self.prefix,
            events=self.topics["events"],
            dlq=self.topics["dlq"],
        )
        env.update(
            {
                "RC_TOPICS__COMMANDS": self.topics["commands"],
                "RC_TOPICS__MONITORS": self.topics["monitors"],
                "RC_TOPICS__FLAG_STATE": self.topics["flag_state"],
                "RC_TOPICS__SEGMENTS": self.topics["segments"],
                "RC_TOPICS__DECISIONS": self.topics["decisions"],
                "RC_TOPICS__ALERTS": self.topics["alerts"],
                "RC_ENGINE__OPERATOR_KEYS": orjson.dumps(
                    {KEY_ID: signing.public_key_text(self.key.public_key())}
                ).decode(),
                "RC_ENGINE__GATE_INTERVAL_SECONDS": "0.2",
                "RC_ENGINE__SWEEP_INTERVAL_SECONDS": "1",
                "RC_INGEST__FETCH_TIMEOUT_MS": "100",
            }
        )
        return env

    def daemon_env(self) -> dict[str, str]:
        """The environment of this world's daemons, extra settings included."""
        return {**self._env(), **self._extra}

    def configure(self, **env: str) -> None:
        """Extra settings for the daemon (before it starts)."""
        self._extra.update(env)
        self.daemon = ControllerProcess(
            env={**self._env(), **self._extra}, log_path=self.daemon.log_path, args=self._args
        )

    def turn_clock_with(self, path: Path) -> None:
        """Run the daemon on a clock this test turns (:func:`controller.dev.clock.set_offset`)."""
        self._args = ("--clock-file", str(path))
        self.configure()

    def map_monitor(self, monitor: str, flags: list[str]) -> None:
        self.monitors[monitor] = flags
        self.configure(RC_ENGINE__MONITORS=orjson.dumps(self.monitors).decode())

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Scenario:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await self._producer.start()
        for name in ("decisions", "alerts", "flag_state"):
            self._tasks.append(asyncio.create_task(self._observe(name), name=f"observe-{name}"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            try:
                if self._producer is not None:
                    await self._producer.stop()
            finally:
                self.daemon.kill()

    def start_daemon(self) -> None:
        self.daemon.start()
        self.daemon.wait_for_log("partition_claimed", timeout=60)

    async def _observe(self, name: str) -> None:
        target = {
            "decisions": self.observed.decisions,
            "alerts": self.observed.alerts,
            "flag_state": self.observed.flag_states,
        }[name]
        consumer = await self._observer(name)
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        message = orjson.loads(record.value)
                        target.append(message)
                        if name == "flag_state":
                            self._states[message["flag"]] = message
        finally:
            await consumer.stop()

    async def _observer(self, name: str) -> AIOKafkaConsumer:
        """A started consumer of one published topic, started again until the broker answers.

        A scenario may stop its broker before an observer got to start on a busy
        machine; that observer waits for the broker, as the daemon does.
        """
        while True:
            # Metadata every 3 s, not aiokafka's 5 minutes: a topic a broker lost and
            # the daemon made again is otherwise not read until then (Apache Kafka names
            # a topic made again only in a metadata answer asked for later).
            consumer = AIOKafkaConsumer(
                self.topics[name],
                bootstrap_servers=self.bootstrap,
                auto_offset_reset="earliest",
                metadata_max_age_ms=3000,
            )
            # Stopped even when cancelled while starting: an unstopped consumer is a
            # ResourceWarning at teardown.
            try:
                await consumer.start()
            except KafkaConnectionError:
                await consumer.stop()
                # aiokafka can leave a connection of a failed bootstrap open; collected
                # here, its warning is this start's, not a later test's failure.
                del consumer
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ResourceWarning)
                    gc.collect()
                await asyncio.sleep(0.5)
                continue
            except BaseException:
                await consumer.stop()
                raise
            return consumer

    # -- the operator ----------------------------------------------------------------

    def command(self, action: str, flag: str, **options: Any) -> dict[str, Any]:
        """A correctly signed command."""
        return sent_object(
            signed_model(
                action, flag, private_key=self.key, key_id=KEY_ID, actor="tester", **options
            )
        )

    async def send(self, command: dict[str, Any] | bytes, *, flag: str) -> None:
        assert self._producer is not None
        value = command if isinstance(command, bytes) else encode_command(command)
        await self._producer.send_and_wait(self.topics["commands"], key=flag.encode(), value=value)

    async def send_event(self, value: bytes, *, unit: str) -> None:
        """One event onto the events topic keyed by its unit, as apps send them (:meth:`flush`
        waits for the broker)."""
        assert self._producer is not None
        await self._producer.send(self.topics["events"], key=unit.encode(), value=value)

    async def flush(self) -> None:
        assert self._producer is not None
        await self._producer.flush()

    def pipeline_command(self, flag: str, pipeline: dict[str, Any]) -> dict[str, Any]:
        """A pipeline start for ``flag``, signed with the scenario's operator key."""
        command = pipeline_command_of(flag, pipeline, actor="tester", key_id=KEY_ID)
        return sent_object(signing.sign_command(command, self.key))

    async def decided(
        self, command: dict[str, Any], *, flag: str, what: str, timeout: float = 30
    ) -> dict[str, Any]:
        """Send ``command`` and return the decision on it, once published."""
        await self.send(command, flag=flag)
        found: dict[str, Any] = await self.until(
            lambda: self.observed.decision_where(command_id=command["id"]),
            timeout=timeout,
            what=what,
        )
        return found

    async def kill_seconds(self, flag: str, *, reason: str) -> float:
        """From sending ``flag``'s kill to seeing its decision, applied, published."""
        started = time.perf_counter()
        await self.send(self.command("kill", flag, reason=reason), flag=flag)
        await eventually(
            lambda: self.observed.decision_where(flag=flag, action="kill", outcome="applied"),
            timeout=60,
            what=f"{flag} killed",
            most=0.01,
        )
        return time.perf_counter() - started

    async def start(self, flag: str, plan: Plan) -> dict[str, Any]:
        command = self.command("start", flag, plan=plan)
        await self.send(command, flag=flag)
        return command

    async def monitor(self, monitor: str, status: str, incident: str) -> None:
        assert self._producer is not None
        alert = {
            "type": "monitor",
            "v": 1,
            "id": incident + status,
            "ts": int(time.time() * 1000),
            "monitor": monitor,
            "status": status,
            "incident_id": incident,
        }
        await self._producer.send_and_wait(
            self.topics["monitors"], key=monitor.encode(), value=orjson.dumps(alert)
        )

    # -- simulated apps ----------------------------------------------------------------

    def state(self, flag: str) -> dict[str, Any] | None:
        """The flag's latest state on the flag-state topic, as apps follow it."""
        return self._states.get(flag)

    def run(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (an app of the test's own) until the scenario ends or stops its apps."""
        self._tasks.append(asyncio.create_task(work, name=f"app-{name}"))

    def run_apps(
        self,
        flag: str,
        *,
        errors: ErrorModel = healthy,
        rate: int = 3000,
        units: int = 4000,
        drop: Callable[[Arm], bool] | None = None,
        latency: LatencyModel = steady_latency,
        unit_errors: UnitErrorModel | None = None,
    ) -> None:
        """Apps serving ``flag``: exposures and requests at ``rate`` events/s; ``unit_errors``,
        when given, decides each request's failure by its unit instead of ``errors``."""
        by_unit = unit_errors or (lambda state, arm, _unit: errors(state, arm))
        app = self._app(flag, by_unit, rate, units, drop, latency)
        self._tasks.append(asyncio.create_task(app, name=f"app-{flag}"))

    async def _app(
        self,
        flag: str,
        errors: UnitErrorModel,
        rate: int,
        units: int,
        drop: Callable[[Arm], bool] | None,
        latency: LatencyModel,
    ) -> None:
        assert self._producer is not None
        rng = random.Random(flag)
        # Event ids are unique across every app and run, as the contract says: ingest
        # counts an id once, so two apps numbering from 0 would undercount each other.
        run = uuid.uuid4().hex[:12]
        tick, i = 0.05, 0
        while True:
            state = self._states.get(flag)
            if state is None or state["status"] not in ("rolling_out", "paused", "completed"):
                await asyncio.sleep(tick)
                continue
            for _ in range(int(rate * tick) // 2):
                unit = f"u{rng.randrange(units)}"
                arm = assign(flag, state["salt"], unit, state["percent"])
                if drop is not None and drop(arm):
                    continue
                base = {
                    "v": 1,
                    "ts": int(time.time() * 1000),
                    "flag": flag,
                    "unit": unit,
                    "arm": arm.value,
                    "flag_version": state["version"],
                }
                failed = rng.random() < errors(state, arm, unit)
                latency_ms = round(latency(arm, rng), 2)
                for body in (
                    {"type": "exposure", "id": f"x{run}-{i}"},
                    {
                        "type": "request",
                        "id": f"r{run}-{i}",
                        "error": failed,
                        "latency_ms": latency_ms,
                    },
                ):
                    await self._producer.send(
                        self.topics["events"],
                        key=unit.encode(),
                        value=orjson.dumps({**base, **body}),
                    )
                    self.events_sent += 1
                i += 1
            await asyncio.sleep(tick)

    async def stop_apps(self) -> None:
        """Stop every simulated app and wait until the broker has all they sent."""
        apps = [t for t in self._tasks if t.get_name().startswith("app-")]
        for task in apps:
            task.cancel()
        for task in apps:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._producer is not None:
            await self._producer.flush()

    # -- waiting and reading -------------------------------------------------------------

    async def until(self, check: Callable[[], Any], *, timeout: float, what: str) -> Any:
        """:func:`~tests.support.waiting.eventually`, failing with the decisions and the
        daemon's log."""
        try:
            return await eventually(check, timeout=timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\ndecisions: {self._decision_summary()}\n"
                f"daemon log tail:\n{self.daemon.log_text()[-2500:]}"
            ) from None

    async def gates_ran(self, marker: str, *, timeout: float = 60) -> None:
        """Return once the daemon has gated every active flag since this call.

        A gate that changes nothing publishes nothing, so a fresh healthy
        rollout of ``marker`` is started and awaited through its first stage:
        that takes a gate at least two seconds later, and every second the
        daemon sweeps all active flags.
        """
        self.run_apps(marker)
        await self.start(marker, fast_plan())
        await self.until(
            lambda: self.observed.decision_where(flag=marker, action="advance", stage=1),
            timeout=timeout,
            what=f"{marker} through its first stage (gates running)",
        )

    def _decision_summary(self) -> list[tuple[Any, ...]]:
        return [
            (d["flag"], d["action"], d["outcome"], d.get("stage"), d["reason"][:80])
            for d in self.observed.decisions
        ]

    async def rollout(self, flag: str) -> Rollout | None:
        async with connect(RedisSettings(url=self.redis_url)) as client:
            store = RolloutStore(client, settings=RedisSettings(key_prefix=self.prefix))
            return (await store.load(flag)).rollout
