"""structlog configuration: JSON lines on stdout (or a console renderer for people).

Libraries that log through the standard library (aiohttp, aiokafka, redis)
are rendered by the same processors, so the log stays one JSON object a line
whatever logged it. A client's malformed HTTP request is the client's error,
not ours: it is logged as one line naming the error and its status, without a
traceback (see :func:`client_errors_without_traceback`). Their warnings and
errors pass :class:`RepeatLimitingHandler` first: a broker that is away makes
aiokafka log the same error a hundred times a second, so each cause is shown
once per ``log.repeat_interval_seconds``, with the count of those held back.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

from controller.kit.log_repeats import RepeatLimiter, Repeats
from controller.settings import LogSettings

MAX_DETAIL_CHARS = 200
REPEAT_FIELDS = ("repeated", "repeated_seconds")
"""What a shown line says of the lines of its cause held back before it."""
LINE_LOCK = threading.RLock()
"""Held by every writer of a log line, structlog's and the standard library's alike."""


class LineLogger:
    """structlog's output: each line written whole, with its newline, under :data:`LINE_LOCK`.

    structlog's own ``PrintLogger`` calls ``print``, which writes the line and its
    newline separately under a lock of its own; a standard-library record written
    from another thread (the repeat handler's timer, a library's thread) could land
    between the two, leaving two JSON objects on one line.
    """

    def __init__(self, file: TextIO) -> None:
        self._file = file

    def msg(self, message: str) -> None:
        with LINE_LOCK:
            self._file.write(message + "\n")
            self._file.flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def configure(settings: LogSettings, *, stream: TextIO | None = None) -> None:
    """Route structlog and the standard library's logging through one renderer.

    The daemon logs to stdout; a command whose stdout is its output passes
    ``stream=sys.stderr``.
    """
    out = sys.stdout if stream is None else stream
    level = getattr(logging, settings.level.upper())
    # One line per event, even when the stream is a pipe or a file (containers, journald).
    if isinstance(out, io.TextIOWrapper):
        out.reconfigure(line_buffering=True)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_args: LineLogger(out),
        cache_logger_on_first_use=True,
    )
    # aiohttp, aiokafka and redis log through the standard library; keep their warnings.
    handler: logging.Handler = logging.StreamHandler(out)
    handler.lock = LINE_LOCK  # one lock for both writers: no line lands inside another
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(allow=REPEAT_FIELDS),
                client_errors_without_traceback,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    if settings.repeat_interval_seconds > 0:
        handler = RepeatLimitingHandler(handler, interval=settings.repeat_interval_seconds)
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, RepeatLimitingHandler):
            old.close()  # configured before: it tells what it held back
    root.handlers = [handler]
    root.setLevel(max(level, logging.WARNING))


def cause_of(record: logging.LogRecord) -> Hashable:
    """What makes two records the same error: the logger, the level, the message before
    its arguments are put in, and the types of the errors among them (a refused
    connection and a timeout are two causes; node 1 and node 2 refusing are one)."""
    errors = [a for a in record.args or () if isinstance(a, BaseException)]
    if record.exc_info and record.exc_info[1] is not None:
        errors.append(record.exc_info[1])
    kinds = tuple(type(error).__name__ for error in errors)
    return (record.name, record.levelno, str(record.msg), kinds)


class RepeatLimitingHandler(logging.Handler):
    """Passes a cause's warnings and errors to ``inner`` once per ``interval`` seconds.

    The decision is :class:`~controller.kit.log_repeats.RepeatLimiter`'s, keyed by
    :func:`cause_of`. A line shown after some were held back says how many, and over
    how long (``(repeated 412 times in 9.9 s)``, with ``repeated`` and
    ``repeated_seconds`` as fields); held-back lines with no line after them are told
    when their interval ends (a timer thread) and at :meth:`close`. Debug and info
    records are never held back. ``clock`` and ``timers`` are for tests: they turn the
    clock and call :meth:`tell_due` themselves.
    """

    def __init__(
        self,
        inner: logging.Handler,
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        timers: bool = True,
    ) -> None:
        super().__init__()
        self.inner = inner
        self._limiter = RepeatLimiter(interval)
        self._clock = clock
        self._timers = timers
        self._timer: threading.Timer | None = None
        self._samples: dict[Hashable, logging.LogRecord] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING:
            self.inner.handle(record)
            return
        cause = cause_of(record)
        verdict = self._limiter.see(cause, self._clock())
        if not verdict.show:
            self._schedule()
            return
        self._samples[cause] = record
        shown = record if verdict.repeats is None else _told(record, verdict.repeats)
        self.inner.handle(shown)

    def tell_due(self) -> None:
        """Tell the held-back lines whose interval has ended with no line after them."""
        with self.lock:  # type: ignore[union-attr]  # Handler.createLock made it
            self._timer = None
            self._tell(self._limiter.due(self._clock()))
            self._schedule()

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._tell(self._limiter.pending())
        self.inner.close()
        super().close()

    def _tell(self, told: list[Repeats]) -> None:
        for repeats in told:
            sample = self._samples.get(repeats.cause)
            if sample is not None:
                self.inner.handle(_told(sample, repeats, now=time.time()))
        tracked = self._limiter.tracked()
        self._samples = {c: r for c, r in self._samples.items() if c in tracked}

    def _schedule(self) -> None:
        due = self._limiter.next_due()
        if not self._timers or self._timer is not None or due is None:
            return
        self._timer = threading.Timer(max(due - self._clock(), 0.0), self.tell_due)
        self._timer.daemon = True
        self._timer.start()


def _told(
    record: logging.LogRecord, repeats: Repeats, *, now: float | None = None
) -> logging.LogRecord:
    """A copy of ``record`` that says how many of its kind were held back before it."""
    told = logging.makeLogRecord(record.__dict__)
    seconds = round(repeats.seconds, 1)
    told.msg = f"{record.getMessage()} (repeated {repeats.count} times in {seconds} s)"
    told.args = None
    told.repeated = repeats.count
    told.repeated_seconds = seconds
    if now is not None:  # a summary of lines gone by: their traceback is the first's
        told.created, told.exc_info, told.exc_text = now, None, None
    return told


def client_errors_without_traceback(
    _logger: WrappedLogger, _name: str, event: EventDict
) -> EventDict:
    """An error that carries an HTTP status below 500 is the client's: named, not traced.

    aiohttp logs a request its parser refused with the exception, whose
    traceback says nothing about the server; any client can fill the log with
    them. The error's name, status and first line are kept (bounded), at
    warning level.
    """
    exc_info: Any = event.get("exc_info")
    error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    status = getattr(error, "code", None) if isinstance(error, BaseException) else None
    if isinstance(status, int) and 400 <= status < 500:
        del event["exc_info"]
        message = str(getattr(error, "message", "") or "").strip().splitlines()
        event.update(
            level="warning",  # nothing is wrong with the server
            error=type(error).__name__,
            status=status,
            detail=message[0][:MAX_DETAIL_CHARS] if message else "",
        )
    return event
