"""structlog configuration: JSON lines on stdout (or a console renderer for people)."""

from __future__ import annotations

import io
import logging
import sys
from typing import TextIO

import structlog

from controller.settings import LogSettings


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
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    # aiokafka and redis log through the standard library; keep their warnings.
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr)
