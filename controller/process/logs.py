"""structlog configuration: JSON lines on stdout (or a console renderer for people).

Libraries that log through the standard library (aiohttp, aiokafka, redis)
are rendered by the same processors, so the log stays one JSON object a line
whatever logged it. A client's malformed HTTP request is the client's error,
not ours: it is logged as one line naming the error and its status, without a
traceback (see :func:`client_errors_without_traceback`).
"""

from __future__ import annotations

import io
import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

from controller.settings import LogSettings

MAX_DETAIL_CHARS = 200


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
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    # aiohttp, aiokafka and redis log through the standard library; keep their warnings.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                client_errors_without_traceback,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(level, logging.WARNING))


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
