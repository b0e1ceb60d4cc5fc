"""Events from apps: :class:`EventEmitter` sends exposures, request outcomes and conversions.

It turns them into wire events (see the contracts in ``schemas/``) and sends
them to the events topic from a background task. Its methods never block and
never raise: events wait in a bounded buffer, and when the buffer is full or
the client shuts down, events are dropped and counted instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import time
import uuid
from collections import Counter, OrderedDict, deque
from typing import Any, Protocol, TypeGuard

import orjson

from controller.core.common import CONVERSION_NAME_PATTERN, SCHEMA_VERSION, BrokerError
from controller.core.rules import Cohort
from controller.core.wire import Arm
from controller.kit.backoff import retry_backoff
from controller.kit.lifecycle import Lifecycle, cancel
from controller.sdk.transport import EventProducer, Item, Outcome
from controller.settings import KafkaSettings, TopicSettings

log = logging.getLogger("controller.sdk.client")

_TOPICS = TopicSettings()
_ids = random.Random()  # noqa: S311 (ids must be unique, not secret)
"""Random event ids without a system call per event (``uuid4`` reads ``os.urandom``). A
private generator, so an app seeding ``random`` cannot make ids repeat; reseeded from
the system in a forked child, so workers forked from one parent never share ids."""
os.register_at_fork(after_in_child=_ids.seed)
_EVENT_IDS = uuid.UUID("8d7c5e0a-6f1e-5b8e-9a43-2f1c0de5a001")
"""The namespace of :func:`stable_id`'s name-based ids; changing it changes every id."""
_CONVERSION_NAME = re.compile(CONVERSION_NAME_PATTERN)


def conversion_name_ok(name: object) -> TypeGuard[str]:
    """Whether ``name`` may name a conversion: a letter, then up to 63 letters, digits and
    ``_.:-`` (``checkout_completed``), as the event contract says."""
    return isinstance(name, str) and _CONVERSION_NAME.fullmatch(name) is not None


class EventSink(Protocol):
    """Where events go: an :class:`EventEmitter`, or a client forwarding to one."""

    def exposure(
        self,
        flag: str,
        unit: str,
        arm: Arm,
        flag_version: int,
        *,
        key: str | None = None,
        cohort: Cohort | None = None,
    ) -> str | None: ...

    def request(
        self,
        flag: str,
        unit: str,
        arm: Arm,
        flag_version: int,
        *,
        error: bool,
        latency_ms: float | None = None,
        key: str | None = None,
        cohort: Cohort | None = None,
    ) -> str | None: ...

    def conversion(
        self,
        flag: str,
        unit: str,
        arm: Arm,
        flag_version: int,
        *,
        value: float | None = None,
        key: str | None = None,
        cohort: Cohort | None = None,
        name: str | None = None,
    ) -> str | None: ...


def _of(cohort: Cohort | None) -> dict[str, Any]:
    """The event's ``cohort`` field: left out when compared or untargeted, as the contract reads."""
    if cohort is None or cohort is Cohort.COMPARED:
        return {}
    return {"cohort": Cohort(cohort).value}


class EventMethods:
    """The app's three event calls, written once: each is one :meth:`_emit` of its kind.

    :class:`EventEmitter` implements ``_emit`` by buffering the event;
    :class:`EventForwarder` (the app-facing clients) by handing it to its emitter.
    """

    def exposure(
        self,
        flag: str,
        unit: str,
        arm: Arm,
        flag_version: int,
        *,
        key: str | None = None,
        cohort: Cohort | None = None,
    ) -> str | None:
        """Record that ``unit`` was served ``arm`` of ``flag``.

        ``key`` is the caller's idempotency key (a task run, a request id): the
        event then has the same id every time it is sent with that key, see
        :func:`stable_id`. Without one, every event gets a fresh id.
        ``cohort`` is the evaluation's, for a targeted rollout (``Evaluation.cohort``).
        """
        return self._emit("exposure", flag, unit, arm, flag_version, key=key, **_of(cohort))

    def request(
        self,
        flag: str,
        unit: str,
        arm: Arm,
        flag_version: int,
        *,
        error: bool,
        latency_ms: float | None = None,
        key: str | None = None,
        cohort: Cohort | None = None,
    ) -> str | None:
        """Record how a request under ``flag`` ended (``key``, ``cohort`` as for exposures)."""
        extra: dict[str, Any] = {"error": error, **_of(cohort)}
        if latency_ms is not None:
            extra["latency_ms"] = latency_ms
        return self._emit("request", flag, unit, arm, flag_version, key=key, **extra)

    def conversion(
        self,
        flag: str,
        unit: str,
        arm: Arm,
        flag_version: int,
        *,
        value: float | None = None,
        key: str | None = None,
        cohort: Cohort | None = None,
        name: str | None = None,
    ) -> str | None:
        """Record that ``unit`` converted, maybe with a value (``key``, ``cohort`` as above).

        ``name`` says what converted (``checkout_completed``, as OpenFeature's
        ``track()`` names it): a guardrail may then read that name's conversions
        alone, and every guardrail that names none counts it too. A name the
        contract refuses (:func:`conversion_name_ok`) drops the event as ``rejected``.
        """
        extra: dict[str, Any] = _of(cohort)
        if value is not None:
            extra["value"] = value
        if name is not None:
            extra["name"] = name
        return self._emit("conversion", flag, unit, arm, flag_version, key=key, **extra)

    def _emit(
        self,
        kind: str,
        flag: str,
        unit: str,
        arm: Arm,
        flag_version: int,
        *,
        key: str | None,
        **extra: Any,
    ) -> str | None:
        """Send one event of ``kind`` with the fields in ``extra``; its id, or None if dropped."""
        raise NotImplementedError


class EventForwarder(EventMethods):
    """Event calls of a client that holds an emitter in ``events``: each goes to that emitter.

    The emitter does the work (buffering, ids, drops), so a client's events and its
    emitter's are counted together.
    """

    events: EventEmitter

    def _emit(self, *args: Any, **kwargs: Any) -> str | None:
        return self.events._emit(*args, **kwargs)


class EventEmitter(EventMethods, Lifecycle):
    """Sends exposure, request and conversion events to the events topic, keyed by unit.

    The event methods return the event's id, or None when it was dropped.
    ``sent`` counts events the broker acknowledged, ``dropped`` counts lost
    events by reason (``buffer_full``, ``shutdown``, ``rejected``: refused by
    the broker, or not encodable, such as a unit with a lone surrogate) and
    ``buffered`` is how many wait, including those being sent. No event call
    raises.

    An event given an idempotency ``key`` has a stable id; if an event of the
    same id was emitted among the last ``remember_keys`` keyed events (a
    retried task in this process), it is not sent again and ``repeated``
    counts it. So a retry keeps the first attempt's outcome.
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
        remember_keys: int = 10_000,
    ) -> None:
        if max_buffered < 1 or batch_size < 1:
            raise ValueError("max_buffered and batch_size must be positive")
        self._kafka = kafka or KafkaSettings()
        self._topic = topic
        self._max = max_buffered
        self._batch_size = batch_size
        self._flush_timeout = flush_timeout
        self._request_timeout_ms = request_timeout_ms
        self._queue: deque[Item] = deque()
        self._inflight: list[Item] = []
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: EventProducer | None = None
        self._idempotent = True
        self._keyed: OrderedDict[str, None] = OrderedDict()
        self._remember_keys = remember_keys
        self.sent = 0
        self.repeated = 0
        self.dropped: Counter[str] = Counter()

    @property
    def buffered(self) -> int:
        return len(self._queue) + len(self._inflight)

    # -- the app's calls: exposure(), request(), conversion() from EventMethods ------

    def _emit(
        self,
        kind: str,
        flag: str,
        unit: str,
        arm: Arm,
        flag_version: int,
        *,
        key: str | None,
        **extra: Any,
    ) -> str | None:
        if self.buffered >= self._max:
            self.dropped["buffer_full"] += 1
            return None
        name = extra.get("name")
        if name is not None and not conversion_name_ok(name):
            self.dropped["rejected"] += 1  # the contract would refuse the event
            return None
        try:
            event_id = (
                f"{_ids.getrandbits(128):032x}"
                if key is None
                else stable_id(key, flag, kind, name=name)
            )
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
            item = (unit.encode(), orjson.dumps(event))
        except (UnicodeEncodeError, orjson.JSONEncodeError, TypeError, ValueError):
            self.dropped["rejected"] += 1  # not UTF-8 (a lone surrogate), not JSON, no such arm
            return None
        if key is not None and self._repeated(event_id):
            return event_id
        self._queue.append(item)
        self._signal()
        return event_id

    def _repeated(self, event_id: str) -> bool:
        """Whether this keyed event was sent lately (a retry): then it is counted, not sent."""
        if event_id in self._keyed:
            self.repeated += 1
            return True
        self._keyed[event_id] = None
        if len(self._keyed) > self._remember_keys:
            self._keyed.popitem(last=False)
        return False

    def _signal(self) -> None:
        """Tell the sending task there is work; a client on another thread overrides this."""
        self._drained.clear()
        self._wakeup.set()

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
        backoff = retry_backoff(asyncio.Event())  # the emitter stops by cancelling, not by this
        while True:
            if not self.buffered:
                self._drained.set()
                self._wakeup.clear()
                await self._wakeup.wait()
            if not self._inflight:
                count = min(self._batch_size, len(self._queue))
                self._inflight = [self._queue.popleft() for _ in range(count)]
            if await self._send_inflight(self._producer):
                backoff.reset()
            else:
                await backoff.wait()
            if self._producer.renew_needed:
                await self._producer.stop()
                self._producer = await self._connect()

    async def _connect(self) -> EventProducer:
        backoff = retry_backoff(asyncio.Event())
        while True:
            producer = EventProducer(
                self._kafka,
                topic=self._topic,
                request_timeout_ms=self._request_timeout_ms,
                idempotent=self._idempotent,
            )
            try:
                await producer.start()
            except BrokerError as exc:
                log.warning("event_producer_unavailable: %s", exc)
            else:
                # A broker that refused idempotence is not asked again on a reconnect.
                self._idempotent = producer.idempotent
                return producer
            await backoff.wait()

    async def _send_inflight(self, producer: EventProducer) -> bool:
        """Send the in-flight batch; keep what failed transiently. True if all went."""
        outcomes = await producer.send(self._inflight)
        self.sent += outcomes.count(Outcome.SENT)
        if rejected := outcomes.count(Outcome.REJECTED):
            self.dropped["rejected"] += rejected  # no zero entry: ``dropped`` lists real losses
        pairs = zip(self._inflight, outcomes, strict=True)
        self._inflight = [item for item, outcome in pairs if outcome == Outcome.RETRY]
        return not self._inflight


def stable_id(key: str, flag: str, kind: str, *, name: str | None = None) -> str:
    """The id of the ``kind`` event of ``flag`` sent under idempotency ``key``.

    A name-based UUID (version 5), so a retried task that sends its events
    again with the same key sends the same ids, and a consumer that
    deduplicates by id counts them once. A named conversion's name is part of
    it (two names under one key are two events); an unnamed one's id is as it
    always was.
    """
    named = "" if name is None else f"\x1f{name}"
    return uuid.uuid5(_EVENT_IDS, f"{key}\x1f{flag}\x1f{kind}{named}").hex
