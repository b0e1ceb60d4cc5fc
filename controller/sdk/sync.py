"""Flags and events for apps without an event loop: Flask, Django, Celery, Prefect.

:class:`SyncFlags` runs the asyncio clients (a
:class:`~controller.sdk.flags.FlagClient` or a
:class:`~controller.sdk.poller.FlagPoller`, and an
:class:`~controller.sdk.events.EventEmitter`) on an event loop in one
background thread, so there is one transport and one set of guarantees.
The app's threads never wait for that loop: :meth:`SyncFlags.arm` reads
the flag states from memory, and the event methods put the event in the
emitter's bounded buffer and, only when the buffer was empty, wake the
loop with ``call_soon_threadsafe`` (a byte on a pipe). A full buffer drops
and counts. At interpreter exit (``atexit``) the client flushes for at most
its flush timeout and stops.

A thread does not survive ``fork``: create the client in each worker
process (after the fork), not in a parent that forks workers.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any, Self, TypeVar

from controller.core.wire import NO_ATTRIBUTES, Arm, FlagState
from controller.kit.backoff import retry_backoff
from controller.sdk.events import EventEmitter, EventForwarder
from controller.sdk.flags import FlagBook, FlagClient, Listener
from controller.sdk.measure import Measurement
from controller.sdk.poller import FlagPoller
from controller.settings import KafkaSettings, TopicSettings

log = logging.getLogger("controller.sdk.sync")

_TOPICS = TopicSettings()
T = TypeVar("T")


class ThreadedEmitter(EventEmitter):
    """An :class:`EventEmitter` whose event methods may be called from any thread.

    Its sending task runs on ``loop`` (another thread's); callers take a lock
    only to keep the buffer's bound and the drop counters exact. After
    :meth:`close_intake`, events are dropped and counted as ``closed``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop = loop
        self._lock = threading.Lock()
        self._open = True

    def close_intake(self) -> None:
        with self._lock:
            self._open = False

    def _emit(self, *args: Any, **kwargs: Any) -> str | None:
        with self._lock:
            if not self._open:
                self.dropped["closed"] += 1
                return None
            return super()._emit(*args, **kwargs)

    def _signal(self) -> None:
        # Called under the lock, right after the append: a queue of one means
        # it was empty, so the sending task may be asleep. Otherwise it is
        # awake and looks at the queue again before it sleeps.
        if len(self._queue) == 1:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to wake
                self._loop.call_soon_threadsafe(super()._signal)


class SyncFlags(EventForwarder):
    """Flag arms and events for threaded apps; every call returns at once.

    Reads states from the Kafka topic, or from the controller's ``/flags``
    when ``flags_url`` is given; with ``flag_keys`` (key id -> the controller's
    base64 public key) only states it signed, the others counted in
    ``book.rejected``; ``api_key`` is the app's key for a controller that requires
    one. ``loaded`` turns true once the states are
    read; until then unknown flags serve control with flag version 0, as
    they do in the asyncio clients. The client starts on construction.
    """

    events: ThreadedEmitter

    def __init__(
        self,
        kafka: KafkaSettings | None = None,
        *,
        flags_url: str | None = None,
        flag_topic: str = _TOPICS.flag_state,
        events_topic: str = _TOPICS.events,
        max_buffered: int = 10_000,
        flush_timeout: float = 5.0,
        poll_interval: float = 1.0,
        request_timeout_ms: int = 10_000,
        flag_keys: Mapping[str, str] | None = None,
        api_key: str | None = None,
    ) -> None:
        kafka = kafka or KafkaSettings()
        self._loop = asyncio.new_event_loop()
        self._source: FlagClient | FlagPoller = (
            FlagPoller(flags_url, interval=poll_interval, keys=flag_keys, api_key=api_key)
            if flags_url
            else FlagClient(kafka, topic=flag_topic, keys=flag_keys)
        )
        self.events = ThreadedEmitter(
            self._loop,
            kafka,
            topic=events_topic,
            max_buffered=max_buffered,
            flush_timeout=flush_timeout,
            request_timeout_ms=request_timeout_ms,
        )
        self._flush_timeout = flush_timeout
        self._loaded = threading.Event()
        self._source.on_change(self._changed)
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollout-flags", daemon=True)
        self._thread.start()
        self._started.wait()
        atexit.register(self.close)

    # -- flags -------------------------------------------------------------------------

    @property
    def book(self) -> FlagBook:
        return self._source

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until the states are loaded (for start-up, not per request); whether they are."""
        return self._loaded.wait(timeout)

    def state(self, flag: str) -> FlagState | None:
        return self._source.state(flag)

    def arm(
        self, flag: str, unit: str, attributes: Mapping[str, object] = NO_ATTRIBUTES
    ) -> tuple[Arm, int]:
        return self._source.arm(flag, unit, attributes)

    def value(
        self, flag: str, unit: str, default: T, attributes: Mapping[str, object] = NO_ATTRIBUTES
    ) -> T:
        """See :meth:`FlagBook.value`: read from memory, never waits."""
        return self._source.value(flag, unit, default, attributes)

    def on_change(self, listener: Listener) -> None:
        """See :meth:`FlagBook.on_change`; listeners run on the client's thread."""
        self._source.on_change(listener)

    def measure(
        self,
        flag: str,
        unit: str,
        *,
        key: str | None = None,
        attributes: Mapping[str, object] = NO_ATTRIBUTES,
    ) -> Measurement:
        """``with flags.measure(flag, unit) as arm:``; see :class:`Measurement`.

        ``attributes`` are the rest of the evaluation context, for targeted rollouts.
        """
        return Measurement(self._source, self.events, flag, unit, key=key, attributes=attributes)

    # -- events: exposure(), request(), conversion() from EventForwarder -------------

    @property
    def sent(self) -> int:
        return self.events.sent

    @property
    def dropped(self) -> Counter[str]:
        return self.events.dropped

    @property
    def buffered(self) -> int:
        return self.events.buffered

    # -- lifecycle ---------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Stop taking events, flush for at most the flush timeout, stop the thread.

        Idempotent; registered with ``atexit``. ``timeout`` bounds the wait for
        the thread (default: the flush timeout plus the producer's close).
        """
        atexit.unregister(self.close)
        self.events.close_intake()
        stopping = self._stopping
        if stopping is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(stopping.set)
        self._thread.join(self._flush_timeout + 15 if timeout is None else timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _changed(self, state: FlagState | None) -> None:
        if state is None:
            self._loaded.set()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stopping = stopping = asyncio.Event()
        self._started.set()
        await self.events.start()
        starting = asyncio.create_task(self._start_source(stopping), name="flag-source-start")
        try:
            await stopping.wait()
        finally:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await self._source.stop()
            await self.events.stop()

    async def _start_source(self, stopping: asyncio.Event) -> None:
        """Start the flag source, retrying while the broker or the topic is not there yet."""
        backoff = retry_backoff(stopping)
        while not stopping.is_set():
            try:
                await self._source.start()
            except Exception as exc:  # a broker error, a missing topic: log, retry
                log.warning("flag_source_unavailable: %r", exc)
                await self._source.stop()
                await backoff.wait()
            else:
                return
