"""What every rolloutctl command shares at the terminal: messages, exits and the environment.

One line per problem on stderr (:func:`warn`, :func:`fail`), JSON on stdout
(:func:`print_json`), the exit code each kind of error gets (:func:`run_guarded`),
and the environment variables and defaults the commands read.

It loads none of the core: building the parser and printing ``--help`` go through here, and
the errors' classes are loaded when one is told.
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable
from typing import Any

import orjson

from controller.ctl.exits import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_READER_LEFT,
    EXIT_USAGE,
)

PROG = "rolloutctl"
ENV_ACTOR = "ROLLOUTCTL_ACTOR"
ENV_KEY = "ROLLOUTCTL_KEY"
ENV_KEY_ID = "ROLLOUTCTL_KEY_ID"
ENV_URL = "ROLLOUTCTL_URL"
DEFAULT_KEY_DIR = "~/.config/rolloutctl"
DEFAULT_URL = "http://127.0.0.1:8000"
ENV_TOKEN = "ROLLOUTCTL_TOKEN"  # noqa: S105 - the variable's name, not a token
"""What the tools send as ``Authorization: Bearer`` to the controller's read API: its webhook
token, where one is set (``/rollouts*``, ``/app-keys``, and ``/flags`` and
``/v1/segments*``, which take an app key of scope ``evaluate`` too)."""


def os_reason(exc: BaseException) -> str:
    """An OS error as a short sentence (strerror and file), for one-line messages."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return str(exc)


def run_guarded(body: Callable[[], int]) -> int:
    """Run a command's ``body``; turn the project's errors into one line and an exit code.

    Usage errors exit 2, bad configuration, plans or keys 78, anything else
    the controller or the OS reports 1, and Ctrl-C 130. When the reader of
    stdout goes away (``rolloutctl watch | head``) the command ends quietly
    with 141, as a tool killed by SIGPIPE would.
    """
    try:
        try:
            return _errors_told(body)
        finally:
            sys.stdout.flush()  # here, not at exit: a reader that left is seen below
    except BrokenPipeError as exc:
        return _broken_pipe(exc)


def _errors_told(body: Callable[[], int]) -> int:
    try:
        return body()
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        told = _told(exc)
        if told is None:
            raise
        return told


def _told(exc: Exception) -> int | None:
    """Tell ``exc`` in one line and return its exit code; None for an error nobody expects."""
    # Loaded only now: a command that fails has loaded the core already, and `--help` never does.
    from controller.core.common import ConfigError, ControllerError  # noqa: PLC0415
    from controller.ctl.usage import UsageError  # noqa: PLC0415

    if isinstance(exc, UsageError):
        return fail(str(exc), EXIT_USAGE)
    if isinstance(exc, ConfigError):
        return fail(str(exc), EXIT_CONFIG)
    if isinstance(exc, ControllerError):
        return fail(str(exc), EXIT_FAILURE)
    if isinstance(exc, OSError):
        return fail(os_reason(exc), EXIT_FAILURE)
    return None


def _broken_pipe(exc: BrokenPipeError) -> int:
    if not stdout_reader_left():
        return fail(os_reason(exc), EXIT_FAILURE)
    # Nothing more can reach the reader; the interpreter's last flush must not try.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_READER_LEFT


def stdout_reader_left() -> bool:
    """Whether stdout is a pipe (or socket) whose reading end was closed."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)  # POLLERR is reported whatever is asked
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError):  # no stdout at all: nobody to tell
        return True


def fail(message: str, code: int) -> int:
    """Tell the operator what went wrong, on one line; return ``code``."""
    lines = (line.strip() for line in message.splitlines())
    warn("; ".join(line for line in lines if line))
    return code


def print_json(data: Any) -> None:
    """``data`` as one line of JSON on stdout."""
    sys.stdout.write(orjson.dumps(data).decode() + "\n")


def env_url(given: str | None) -> str:
    """The controller's HTTP address: ``given``, else ``$ROLLOUTCTL_URL``, else the default."""
    return (given or os.environ.get(ENV_URL) or DEFAULT_URL).rstrip("/")


def warn(message: str) -> None:
    """A message to the operator, on stderr, prefixed with the program name."""
    print(f"{PROG}: {message}", file=sys.stderr)
