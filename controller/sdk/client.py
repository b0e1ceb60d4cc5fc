"""The app-side client: follow flag states, assign arms, emit events.

:class:`FlagClient` reads the compacted flag-state topic from its beginning
(no consumer group: every partition, every instance) and answers
:meth:`FlagClient.arm` from memory with the shared bucketing function, so
every app instance serves a unit the same arm for the same flag version.

:class:`EventEmitter` turns exposures, request outcomes and conversions into
wire events (see docs/architecture.md, *Topics and wire contracts*) and
sends them to the events topic from a background task. Its methods never
block and never raise: events wait in a bounded buffer, and when the buffer
is full or the client shuts down, events are dropped and counted instead.

Only aiokafka, orjson, the core package and the settings are imported, so
apps do not pull in the daemon's Redis or engine code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any, Self

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from pydantic import ValidationError

from controller.core.bucketing import assign
from controller.core.messages import SCHEMA_VERSION, Arm, FlagState, FlagStatus
from controller.settings import KafkaSettings, TopicSettings

log = logging.getLogger("controller.sdk.client")

_TOPICS = TopicSettings()
SERVES_CONTROL = frozenset({FlagStatus.INACTIVE, FlagStatus.ROLLED_BACK, FlagStatus.KILLED})
"""Statuses under which every unit is served control, reported as flag version 0."""


class Lifecycle:
    """``start()``/``stop()`` (both idempotent) and ``async with``."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def cancel(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# --------------------------------------------------------------------------------------
# Flag states
# --------------------------------------------------------------------------------------


class FlagBook:
    """The latest state of each flag, and the arm a unit gets from it.

    Shared by :class:`FlagClient` (Kafka) and
    :class:`controller.sdk.poller.FlagPoller` (HTTP): whichever way states
    arrive, arms are assigned by the one bucketing function.
    """

    def __init__(self, states: Iterable[FlagState] = ()) -> None:
        self._states: dict[str, FlagState] = {}
        self.ready = asyncio.Event()
        self.invalid = 0
        self.stale = 0
        for state in states:
            self.apply(state)

    def state(self, flag: str) -> FlagState | None:
        """The latest state of ``flag``, or None when none was seen."""
        return self._states.get(flag)

    def arm(self, flag: str, unit: str) -> tuple[Arm, int]:
        """The arm to serve ``unit`` and the flag version to report with it.

        Unknown flags and flags that are inactive, rolled back or killed serve
        control with flag version 0.
        """
        state = self._states.get(flag)
        if state is None or state.status in SERVES_CONTROL:
            return Arm.CONTROL, 0
        return assign(flag, state.salt, unit, state.percent), state.version

    def apply(self, state: FlagState) -> bool:
        """Hold ``state`` unless a state of the same or a newer version is held already."""
        current = self._states.get(state.flag)
        if current is not None and state.version <= current.version:
            self.stale += 1
            return False
        self._states[state.flag] = state
        return True


class FlagClient(FlagBook, Lifecycle):
    """The latest state of every flag, followed from the flag-state topic.

    ``ready`` is set once the client has read up to the end offsets it saw at
    start; before that, :meth:`arm` may answer from incomplete state. Invalid
    messages and states older than the one held are ignored and counted in
    ``invalid`` and ``stale``.
    """

    def __init__(
        self,
        kafka: KafkaSettings | None = None,
        *,
        topic: str = _TOPICS.flag_state,
        states: Iterable[FlagState] = (),
        poll_timeout_ms: int = 500,
    ) -> None:
        super().__init__(states)
        self._kafka = kafka or KafkaSettings()
        self._topic = topic
        self._poll_timeout_ms = poll_timeout_ms
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._end: dict[Any, int] = {}

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Assign every partition of the topic, read from the beginning, follow it."""
        if self._consumer is not None:
            return
        consumer = AIOKafkaConsumer(
            **self._kafka.client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            await self._assign_all(consumer)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        await self._check_caught_up()
        self._task = asyncio.create_task(self._follow(), name=f"flag-client-{self._topic}")

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        task, self._task = self._task, None
        await cancel(task)
        if consumer is not None:
            await consumer.stop()

    async def _assign_all(self, consumer: Any) -> None:
        await consumer.topics()  # refreshes the metadata of every topic
        partitions = consumer.partitions_for_topic(self._topic)
        if not partitions:
            raise LookupError(f"the flag-state topic {self._topic!r} does not exist")
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._end = dict(await consumer.end_offsets(tps))

    # -- following -----------------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=self._poll_timeout_ms)
            except KafkaError as exc:
                log.warning("flag_state_fetch_failed: %r", exc)
                await asyncio.sleep(1.0)
                continue
            for records in batch.values():
                for record in records:
                    self._receive(record.value)
            await self._check_caught_up()

    def _receive(self, value: bytes | None) -> None:
        if value is None:  # a tombstone: nothing to assign from
            self.invalid += 1
            return
        try:
            state = FlagState.model_validate_json(value)
        except ValidationError:
            self.invalid += 1
            return
        self.apply(state)

    async def _check_caught_up(self) -> None:
        if self.ready.is_set():
            return
        for tp, end in self._end.items():
            if await self._consumer.position(tp) < end:
                return
        self.ready.set()


# --------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------

_Item = tuple[bytes, bytes]
"""(key, value) of one event."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError | OSError):
        return True
    return bool(getattr(exc, "retriable", False))


class EventEmitter(Lifecycle):
    """Sends exposure, request and conversion events to the events topic, keyed by unit.

    The event methods return the event's id, or None when it was dropped.
    ``sent`` counts events the broker acknowledged, ``dropped`` counts lost
    events by reason (``buffer_full``, ``shutdown``, ``rejected``) and
    ``buffered`` is how many wait, including those being sent.
    """

    def __init__(
        self,
        kafka: KafkaSettings | None = None,
        *,
        topic: str = _TOPICS.events,
        max_buffered: int = 10_000,
        batch_size: int = 500,
        flush_timeout: float = 5.0,
        request_timeout_ms: int = 10_000,
    ) -> None:
        if max_buffered < 1 or batch_size < 1:
            raise ValueError("max_buffered and batch_size must be positive")
        self._kafka = kafka or KafkaSettings()
        self._topic = topic
        self._max = max_buffered
        self._batch_size = batch_size
        self._flush_timeout = flush_timeout
        self._request_timeout_ms = request_timeout_ms
        self._queue: deque[_Item] = deque()
        self._inflight: list[_Item] = []
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: Any = None
        self.sent = 0
        self.dropped: Counter[str] = Counter()

    @property
    def buffered(self) -> int:
        return len(self._queue) + len(self._inflight)

    # -- the app's calls -----------------------------------------------------------

    def exposure(self, flag: str, unit: str, arm: Arm, flag_version: int) -> str | None:
        """Record that ``unit`` was served ``arm`` of ``flag``."""
        return self._emit("exposure", flag, unit, arm, flag_version)

    def request(
        self,
        flag: str,
        unit: str,
        arm: Arm,
        flag_version: int,
        *,
        error: bool,
        latency_ms: float | None = None,
    ) -> str | None:
        """Record how a request served under ``flag`` ended."""
        if latency_ms is None:
            return self._emit("request", flag, unit, arm, flag_version, error=error)
        return self._emit(
            "request", flag, unit, arm, flag_version, error=error, latency_ms=latency_ms
        )

    def conversion(
        self, flag: str, unit: str, arm: Arm, flag_version: int, *, value: float | None = None
    ) -> str | None:
        """Record that ``unit`` converted, optionally with a value."""
        if value is None:
            return self._emit("conversion", flag, unit, arm, flag_version)
        return self._emit("conversion", flag, unit, arm, flag_version, value=value)

    def _emit(
        self, kind: str, flag: str, unit: str, arm: Arm, flag_version: int, **extra: Any
    ) -> str | None:
        if self.buffered >= self._max:
            self.dropped["buffer_full"] += 1
            return None
        event_id = uuid.uuid4().hex
        event = {
            "type": kind,
            "v": SCHEMA_VERSION,
            "id": event_id,
            "ts": time.time_ns() // 1_000_000,
            "flag": flag,
            "unit": unit,
            "arm": Arm(arm).value,
            "flag_version": flag_version,
            **extra,
        }
        self._queue.append((unit.encode(), orjson.dumps(event)))
        self._drained.clear()
        self._wakeup.set()
        return event_id

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start sending in the background; an unreachable broker is retried, not raised."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"event-emitter-{self._topic}")

    async def stop(self) -> None:
        """Send what can be sent within the flush timeout; count the rest as dropped.

        If the broker went away with a batch in flight, closing the producer can
        take up to ``request_timeout_ms`` more while aiokafka gives that batch up.
        """
        task, self._task = self._task, None
        if task is None:
            return
        if self.buffered:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), self._flush_timeout)
        await cancel(task)
        self.dropped["shutdown"] += self.buffered
        self._queue.clear()
        self._inflight.clear()
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    # -- sending -------------------------------------------------------------------

    async def _run(self) -> None:
        self._producer = await self._connect()
        backoff = 0.1
        while True:
            if not self.buffered:
                self._drained.set()
                self._wakeup.clear()
                await self._wakeup.wait()
            if not self._inflight:
                count = min(self._batch_size, len(self._queue))
                self._inflight = [self._queue.popleft() for _ in range(count)]
            if await self._send_inflight():
                backoff = 0.1
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _connect(self) -> Any:
        backoff = 0.1
        while True:
            producer = AIOKafkaProducer(
                **self._kafka.client_options(),
                linger_ms=20,
                request_timeout_ms=self._request_timeout_ms,
            )
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                log.warning("event_producer_unavailable: %r", exc)
                await producer.stop()
            except BaseException:
                await producer.stop()
                raise
            else:
                return producer
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _send_inflight(self) -> bool:
        """Send the in-flight batch; keep what failed transiently. True if all went."""
        futures: list[asyncio.Future[Any]] = []
        unsent: list[_Item] = []
        for i, (key, value) in enumerate(self._inflight):
            try:
                futures.append(await self._producer.send(self._topic, key=key, value=value))
            except KafkaError as exc:
                log.warning("event_send_failed: %r", exc)
                unsent = self._inflight[i:]
                break
        results = await asyncio.gather(*futures, return_exceptions=True)
        retry = [item for item, r in zip(self._inflight, results, strict=False) if _keep(r)]
        self._count(results)
        self._inflight = retry + unsent
        return not self._inflight

    def _count(self, results: list[Any]) -> None:
        for result in results:
            if not isinstance(result, BaseException):
                self.sent += 1
            elif not _transient(result):
                self.dropped["rejected"] += 1


def _keep(result: object) -> bool:
    """Whether a send result calls for sending the event again."""
    return isinstance(result, BaseException) and _transient(result)
