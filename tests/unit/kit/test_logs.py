"""Library log records: a client's HTTP error is named in one line, a server's error is traced."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from controller.process.logs import MAX_DETAIL_CHARS, client_errors_without_traceback


class StatusError(Exception):
    """Shaped like aiohttp's HttpProcessingError: a status code and a message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def exc_info(error: BaseException) -> Any:
    try:
        raise error
    except BaseException:  # the tuple logging passes with a record
        return sys.exc_info()


@pytest.mark.parametrize(
    ("error", "kept"),
    [
        (StatusError(400, "Invalid character in Content-Length:\n\n  b'abc'\n   ^"), False),
        (StatusError(431, "x" * 1000), False),
        (StatusError(500, "the server failed"), True),
        (StatusError("400", "a code that is not a number"), True),  # type: ignore[arg-type]
        (KeyError("a bug"), True),
    ],
)
def test_only_a_client_error_loses_its_traceback(error: StatusError, kept: bool) -> None:
    event = {"event": "Error handling request", "level": "error", "exc_info": exc_info(error)}
    shown = client_errors_without_traceback(None, "error", dict(event))
    assert ("exc_info" in shown) is kept
    if not kept:
        assert shown["status"] == error.code
        assert shown["level"] == "warning"
        assert shown["error"] == "StatusError"
        assert "\n" not in shown["detail"]
        assert len(shown["detail"]) <= MAX_DETAIL_CHARS


def test_a_record_without_an_error_is_left_alone() -> None:
    event = {"event": "connection lost", "level": "warning"}
    assert client_errors_without_traceback(None, "warning", dict(event)) == event
