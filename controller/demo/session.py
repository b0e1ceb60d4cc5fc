"""The live part of a demo run: apps, rollouts and the view, against a running controller.

:class:`Session` waits for the controller to be ready, follows its output
topics, puts the rings' segments with signed segment commands and waits until
the apps hold them, starts the simulated apps, sends a signed ``start`` per flag, then
shows a snapshot twice a second until every flag has finished (and each
rollback's alert has arrived) or the deadline passes. Leaving it stops the
apps first, then the watcher, the emitter (which flushes) and the clients.

Each snapshot is computed as the controller computes it: the flag's rollout
state from Redis, the aggregates of its current stage, and the pure gate
:func:`~controller.core.machine.gate.evaluate` on them, so the error rates and the
sequential bound on screen are the ones the next gate decides on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console

from controller.adapters.http_client import answers_ok_async
from controller.adapters.kafka import delete_topics
from controller.adapters.redis import RedisAggregateStore, RolloutStore, connect
from controller.core.common import ControllerError
from controller.core.machine import evaluate
from controller.ctl.operate import encode_command, send_command, signed_model
from controller.demo.apps import SimulatedApps
from controller.demo.options import DemoOptions
from controller.demo.scenario import (
    ACTOR,
    KEY_ID,
    DemoFlag,
    Endpoints,
    demo_plan,
    requests_per_second,
)
from controller.demo.segments import missing, put_segments
from controller.demo.snapshot import DemoSnapshot, FlagView, flag_view
from controller.demo.terminal import Display, LiveDisplay, PlainDisplay
from controller.demo.tracking import Tracker
from controller.demo.watch import OutputWatcher
from controller.dev.processes import ManagedProcess
from controller.sdk import EventEmitter, FlagClient
from controller.settings import KafkaSettings, RedisSettings

REFRESH_SECONDS = 0.5
READY_TIMEOUT_SECONDS = 60.0
ALERT_GRACE_SECONDS = 5.0
"""Once every flag has finished, how long to wait for the rollback alerts."""


class DemoError(ControllerError):
    """The demo could not run: the controller did not start, or died."""


@dataclass(frozen=True, slots=True)
class Labels:
    """Words for the header of the view."""

    advisor: str
    fault: str


class Session:
    """One run's apps, rollouts and view; :meth:`run` returns the final state of every flag."""

    def __init__(
        self,
        *,
        flags: Sequence[DemoFlag],
        options: DemoOptions,
        endpoints: Endpoints,
        topics: dict[str, str],
        prefix: str,
        key: Ed25519PrivateKey,
        flag_keys: dict[str, str],
        controller: ManagedProcess,
        log: IO[bytes],
        console: Console,
        started: float,
        labels: Labels,
    ) -> None:
        self._flags = tuple(flags)
        self._options = options
        self._endpoints = endpoints
        self._topics = topics
        self._prefix = prefix
        self._key = key
        self._flag_keys = flag_keys
        self._controller = controller
        self._log = log
        self._console = console
        self._started = started
        self._labels = labels
        self._kafka = KafkaSettings(bootstrap_servers=endpoints.kafka, client_id="rollout-demo")
        self._tracker = Tracker()
        plain = options.plain or not console.is_terminal
        self._display: Display = PlainDisplay(console) if plain else LiveDisplay(console)

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    async def run(self) -> tuple[FlagView, ...]:
        await self._wait_until_ready()
        async with contextlib.AsyncExitStack() as stack:
            redis_settings = RedisSettings(url=self._endpoints.redis)
            redis = await stack.enter_async_context(connect(redis_settings))
            topic = self._topics["flag_state"]
            flags = await stack.enter_async_context(
                FlagClient(
                    self._kafka,
                    topic=topic,
                    keys=self._flag_keys,
                    follow_segments=True,
                    segments_topic=self._topics["segments"],
                )
            )
            emitter = await stack.enter_async_context(
                EventEmitter(self._kafka, topic=self._topics["events"], max_buffered=50_000)
            )
            watcher = self._watcher()
            tasks = [await stack.enter_async_context(_background(watcher.run(), "demo-watch"))]
            await asyncio.wait_for(flags.ready.wait(), READY_TIMEOUT_SECONDS)
            await self._put_segments(flags)
            apps = self._apps(flags, emitter)
            tasks.append(await stack.enter_async_context(_background(apps.run(), "demo-apps")))
            await self._start_rollouts()
            with self._display:
                return await self._follow(redis, emitter, tasks)
        raise AssertionError("unreachable")  # pragma: no cover - the context returns

    # -- set-up ----------------------------------------------------------------------

    async def _wait_until_ready(self) -> None:
        """Until the controller's /readyz answers 200: Redis up, events partitions owned."""
        url = f"http://127.0.0.1:{self._endpoints.http_port}/readyz"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            self._check_controller()
            if await answers_ok_async(url, timeout_s=1.0):
                return
            if time.monotonic() > deadline:
                raise DemoError(
                    f"the controller was not ready within {READY_TIMEOUT_SECONDS:.0f} s:\n"
                    f"{self._controller.log_tail()}"
                )
            await asyncio.sleep(0.2)

    async def _put_segments(self, flags: FlagClient) -> None:
        """Put the segments as an operator does; return once the apps hold them."""
        await put_segments(self._key, kafka=self._kafka, topic=self._topics["commands"])
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while absent := missing(flags.segments):
            self._check_controller()
            if time.monotonic() > deadline:
                raise DemoError(f"the apps did not receive the segments {absent} in time")
            await asyncio.sleep(0.1)

    def _check_controller(self) -> None:
        if not self._controller.running():
            raise DemoError(
                f"the controller exited with code {self._controller.returncode}:\n"
                f"{self._controller.log_tail()}"
            )

    def _watcher(self) -> OutputWatcher:
        names = [self._topics[t] for t in ("decisions", "alerts", "flag_state")]
        return OutputWatcher(
            self._kafka,
            topics=names,
            log=self._log,
            tracker=self._tracker,
            listener=self._published,
        )

    def _published(self, message: dict[str, Any]) -> None:
        self._display.published(self.elapsed(), message)

    def _apps(self, flags: FlagClient, emitter: EventEmitter) -> SimulatedApps:
        return SimulatedApps(
            self._flags,
            flag_client=flags,
            emitter=emitter,
            requests_per_second=requests_per_second(len(self._flags)),
        )

    async def _start_rollouts(self) -> None:
        """One signed ``start`` per flag, as an operator sends it with ``rolloutctl``."""
        plan = demo_plan()
        for flag in self._flags:
            command = signed_model(
                "start",
                flag.name,
                private_key=self._key,
                key_id=KEY_ID,
                actor=ACTOR,
                reason="rollout-controller demo",
                plan=plan,
            )
            await send_command(
                encode_command(command),
                key=flag.name.encode(),
                kafka=self._kafka,
                topic=self._topics["commands"],
            )

    # -- following ---------------------------------------------------------------------

    async def _follow(
        self, redis: Any, emitter: EventEmitter, tasks: list[asyncio.Task[None]]
    ) -> tuple[FlagView, ...]:
        states = RolloutStore(redis, settings=RedisSettings(key_prefix=self._prefix))
        aggregates = RedisAggregateStore(
            redis, settings=RedisSettings(key_prefix=self._prefix), topic=self._topics["events"]
        )
        meter = _RateMeter()
        finished_at: float | None = None
        deadline = self._started + self._options.duration
        while True:
            views = await read_views(self._flags, states, aggregates, self._tracker)
            self._display.show(self._snapshot(views, emitter.sent, meter))
            now = time.monotonic()
            if all(view.finished for view in views):
                finished_at = finished_at or now
                # Redis says it is over; wait until the log holds the last decisions too.
                if self._logged(views) or now - finished_at > ALERT_GRACE_SECONDS:
                    return views
            if now >= deadline:
                return views
            self._check_controller()
            _check_tasks(tasks)
            await asyncio.sleep(REFRESH_SECONDS)

    def _logged(self, views: tuple[FlagView, ...]) -> bool:
        """Every rollout's concluding decision, and each rollback's alert, are in the log."""
        concluded = all(self._tracker.record(view.flag).concluded for view in views)
        return concluded and _alerts_in(views)

    def _snapshot(self, views: tuple[FlagView, ...], sent: int, meter: _RateMeter) -> DemoSnapshot:
        return DemoSnapshot(
            elapsed_s=self.elapsed(),
            flags=views,
            events_sent=sent,
            events_per_s=meter.rate(sent),
            advisor=self._labels.advisor,
            fault=self._labels.fault,
            log_path=self._log.name if isinstance(self._log.name, str) else "",
        )


async def read_views(
    flags: Sequence[DemoFlag],
    states: RolloutStore,
    aggregates: RedisAggregateStore,
    tracker: Tracker,
) -> tuple[FlagView, ...]:
    """Every flag's view: its rollout, the gate's verdict on the stage's aggregates, its record."""
    now = datetime.now(UTC)
    views = []
    for flag in flags:
        rollout = (await states.load(flag.name)).rollout
        verdict = None
        if rollout is not None and rollout.phase.active:
            data = await aggregates.read(flag.name, rollout.stage_flag_versions())
            verdict = evaluate(rollout, data, now)
        views.append(flag_view(flag, rollout, verdict, tracker.record(flag.name), now))
    return tuple(views)


async def forget(
    endpoints: Endpoints,
    *,
    topics: dict[str, str],
    prefix: str,
    kafka_is_ours: bool,
    redis_is_ours: bool,
) -> None:
    """Delete a run's topics and keys from a broker and a Redis that outlive the demo."""
    if not redis_is_ours:
        async with connect(RedisSettings(url=endpoints.redis)) as redis:
            keys = [key async for key in redis.scan_iter(match=f"*{prefix}*", count=1000)]
            for start in range(0, len(keys), 500):
                await redis.delete(*keys[start : start + 500])
    if not kafka_is_ours:
        kafka = KafkaSettings(bootstrap_servers=endpoints.kafka)
        await delete_topics(kafka, list(topics.values()))


def _alerts_in(views: Sequence[FlagView]) -> bool:
    return all(view.rollback_alerted for view in views if view.phase == "rolled_back")


def _check_tasks(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise DemoError(f"{task.get_name()} failed: {task.exception()!r}")


class _RateMeter:
    """Events per second between two readings of a counter."""

    def __init__(self) -> None:
        self._last = (time.monotonic(), 0)
        self._rate = 0.0

    def rate(self, count: int) -> float:
        now = time.monotonic()
        then, before = self._last
        if now - then >= 1.0:
            self._rate = (count - before) / (now - then)
            self._last = (now, count)
        return self._rate


@contextlib.asynccontextmanager
async def _background(
    work: Coroutine[Any, Any, None], name: str
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``work`` as a task while inside; cancel it and wait for it on the way out."""
    task = asyncio.create_task(work, name=name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
