"""One-line instrumentation: ``with flags.measure(flag, unit) as arm:``.

:class:`Measurement` picks the arm, emits the exposure on entry and the
request outcome on exit: the block's latency, and ``error`` when the block
raised (the exception is re-raised unchanged). It is both a ``with`` and an
``async with`` context manager, because emitting never blocks: the same
object serves Flask views, Celery tasks and asyncio handlers.

:class:`Flags` is the asyncio app's one object: a flag source (the Kafka
:class:`~controller.sdk.flags.FlagClient` or the HTTP
:class:`~controller.sdk.poller.FlagPoller`) and an
:class:`~controller.sdk.events.EventEmitter`, started and stopped together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Protocol, TypeVar

from controller.core.common import MAX_LATENCY_MS
from controller.core.rules import Cohort
from controller.core.wire import NO_ATTRIBUTES, Arm, Evaluation, FlagState, Reason
from controller.kit.lifecycle import Lifecycle
from controller.sdk.events import EventEmitter, EventForwarder, EventSink
from controller.sdk.flags import FlagClient, Listener
from controller.sdk.poller import FlagPoller

T = TypeVar("T")


class ArmSource(Protocol):
    """Where arms come from: a :class:`~controller.sdk.flags.FlagBook` or a client holding one."""

    def evaluate(
        self, flag: str, unit: object, attributes: Mapping[str, object] = NO_ATTRIBUTES
    ) -> Evaluation: ...


class Measurement:
    """One measured block: the exposure on entry, the request outcome on exit.

    A block that raises an :class:`Exception` is recorded as an error and the
    exception propagates unchanged. A block ended by a ``BaseException`` that
    is not an ``Exception`` (task cancellation, ``KeyboardInterrupt``,
    ``SystemExit``) records no outcome: the request did not fail, it was
    abandoned, and its latency means nothing. ``key`` is the idempotency key
    passed to every event (see :func:`controller.sdk.events.stable_id`).
    ``expose=False`` when the exposure was emitted already (an OpenFeature hook).
    ``clock`` reads the seconds the latency is measured between (a monotonic
    clock, :func:`time.perf_counter` by default).
    """

    def __init__(
        self,
        arms: ArmSource,
        events: EventSink,
        flag: str,
        unit: str,
        *,
        key: str | None = None,
        expose: bool = True,
        clock: Callable[[], float] = time.perf_counter,
        attributes: Mapping[str, object] = NO_ATTRIBUTES,
    ) -> None:
        self._arms, self._events, self._clock = arms, events, clock
        self.flag, self.unit, self.key = flag, unit, key
        self.attributes = attributes
        self._expose = expose
        self.arm = Arm.CONTROL
        self.value: Any = False
        """The served arm's value (the plan's declared one, else a boolean), once entered."""
        self.flag_version = 0
        self.cohort: Cohort | None = None
        self.latency_ms: float | None = None
        self.error: bool | None = None
        self._started = 0.0

    def __enter__(self) -> Arm:
        found = self._arms.evaluate(self.flag, self.unit, self.attributes)
        self.flag = found.flag  # its key in the app's environment: what the events name
        self.arm, self.flag_version, self.cohort = found.arm, found.version, found.cohort
        self.value = found.value
        if self._expose:
            self._events.exposure(
                self.flag, self.unit, self.arm, self.flag_version, key=self.key, cohort=self.cohort
            )
        self._started = self._clock()
        return self.arm

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        elapsed_ms = (self._clock() - self._started) * 1000
        if exc is not None and not isinstance(exc, Exception):
            return
        # A block longer than the contract's bound (a day) reports no latency, not a bad event.
        self.latency_ms = round(elapsed_ms, 3) if elapsed_ms <= MAX_LATENCY_MS else None
        self.error = exc is not None
        self._events.request(
            self.flag,
            self.unit,
            self.arm,
            self.flag_version,
            error=self.error,
            latency_ms=self.latency_ms,
            key=self.key,
            cohort=self.cohort,
        )

    async def __aenter__(self) -> Arm:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)


class Served:
    """An :class:`ArmSource` that answers the arm already served (resolved elsewhere)."""

    def __init__(self, arm: Arm, flag_version: int, cohort: Cohort | None = None) -> None:
        self._served = (arm, flag_version, cohort)

    def evaluate(
        self, flag: str, unit: object, attributes: Mapping[str, object] = NO_ATTRIBUTES
    ) -> Evaluation:
        arm, version, cohort = self._served
        return Evaluation(flag, arm, version, Reason.SPLIT, cohort=cohort)


class Flags(EventForwarder, Lifecycle):
    """An asyncio app's flags and events in one object; ``async with Flags(...) as flags``.

    ``source`` is a :class:`~controller.sdk.flags.FlagClient`
    or :class:`~controller.sdk.poller.FlagPoller`; ``events`` the emitter, which
    the event methods (``exposure``, ``request``, ``conversion``) hand their events to;
    ``clock`` the one :meth:`measure` times blocks with.
    """

    def __init__(
        self,
        source: FlagClient | FlagPoller,
        events: EventEmitter,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.book = source
        self.events = events
        self._clock = clock

    async def start(self) -> None:
        await self.events.start()
        await self.book.start()

    async def stop(self) -> None:
        await self.book.stop()
        await self.events.stop()

    @property
    def loaded(self) -> bool:
        """Whether the flag states were read up to where they were when the source started."""
        return self.book.ready.is_set()

    def state(self, flag: str) -> FlagState | None:
        return self.book.state(flag)

    def arm(
        self, flag: str, unit: str, attributes: Mapping[str, object] = NO_ATTRIBUTES
    ) -> tuple[Arm, int]:
        return self.book.arm(flag, unit, attributes)

    def value(
        self, flag: str, unit: str, default: T, attributes: Mapping[str, object] = NO_ATTRIBUTES
    ) -> T:
        """See :meth:`~controller.sdk.flags.FlagBook.value`."""
        return self.book.value(flag, unit, default, attributes)

    def on_change(self, listener: Listener) -> None:
        """See :meth:`~controller.sdk.flags.FlagBook.on_change`."""
        self.book.on_change(listener)

    def measure(
        self,
        flag: str,
        unit: str,
        *,
        key: str | None = None,
        attributes: Mapping[str, object] = NO_ATTRIBUTES,
    ) -> Measurement:
        """``with``/``async with flags.measure(flag, unit) as arm:``; see :class:`Measurement`.

        ``attributes`` are the rest of the evaluation context, for targeted rollouts.
        """
        return Measurement(
            self.book, self.events, flag, unit, key=key, clock=self._clock, attributes=attributes
        )
