"""A library's repeated warnings and errors reach the log once per cause per interval, counted."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest
import structlog

from controller.process.logs import RepeatLimitingHandler, cause_of, configure
from controller.settings import LogSettings

INTERVAL = 10.0
REFUSED = "Unable connect to node with id %s: %s"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


def record(
    msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka"
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def refused(node: int) -> logging.LogRecord:
    return record(REFUSED, node, ConnectionRefusedError(111, "Connect call failed"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kept() -> Kept:
    return Kept()


@pytest.fixture
def limited(clock: Clock, kept: Kept) -> RepeatLimitingHandler:
    return RepeatLimitingHandler(kept, interval=INTERVAL, clock=clock, timers=False)


def test_a_refused_connection_is_logged_once_per_interval_with_the_count_held_back(
    clock: Clock, kept: Kept, limited: RepeatLimitingHandler
) -> None:
    for n in range(100):  # 10 a second for 10 s, from two nodes
        clock.now = n / 10
        limited.handle(refused(1 + n % 2))
    assert kept.messages() == ["Unable connect to node with id 1: [Errno 111] Connect call failed"]
    clock.now = 10.0
    limited.handle(refused(2))
    told = kept.records[-1]
    assert told.getMessage() == (
        "Unable connect to node with id 2: [Errno 111] Connect call failed "
        "(repeated 99 times in 9.9 s)"
    )
    assert (told.repeated, told.repeated_seconds) == (99, 9.9)  # type: ignore[attr-defined]
    assert told.levelno == logging.ERROR


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        pytest.param(refused(1), refused(2), True, id="another node, same error"),
        pytest.param(
            refused(1),
            record(REFUSED, 1, TimeoutError("timed out")),
            False,
            id="another error",
        ),
        pytest.param(
            refused(1),
            record("Unable to update metadata from %s", [1]),
            False,
            id="another message",
        ),
        pytest.param(
            refused(1), record(REFUSED, 1, ConnectionRefusedError(), name="x"), False, id="logger"
        ),
        pytest.param(
            refused(1),
            record(REFUSED, 1, ConnectionRefusedError(), level=logging.WARNING),
            False,
            id="level",
        ),
    ],
)
def test_a_cause_is_the_logger_level_message_and_error_type(
    first: logging.LogRecord, second: logging.LogRecord, same: bool
) -> None:
    assert (cause_of(first) == cause_of(second)) is same


def test_each_cause_has_its_interval(kept: Kept, limited: RepeatLimitingHandler) -> None:
    limited.handle(refused(1))
    limited.handle(record("Unable to update metadata from %s", [1]))
    limited.handle(refused(1))
    assert kept.messages() == [
        "Unable connect to node with id 1: [Errno 111] Connect call failed",
        "Unable to update metadata from [1]",
    ]


def test_info_and_debug_are_never_held_back(kept: Kept, limited: RepeatLimitingHandler) -> None:
    for _ in range(3):
        limited.handle(record("joined group", level=logging.INFO))
        limited.handle(record("fetching", level=logging.DEBUG))
    assert len(kept.records) == 6


def test_lines_held_back_at_the_end_of_an_outage_are_told_when_their_interval_ends(
    clock: Clock, kept: Kept, limited: RepeatLimitingHandler
) -> None:
    for n in range(30):  # the broker came back after 3 s
        clock.now = n / 10
        limited.handle(refused(1))
    clock.now = 9.9
    limited.tell_due()
    assert len(kept.records) == 1  # the interval has not ended
    clock.now = 10.0
    limited.tell_due()
    assert kept.messages()[1].endswith("(repeated 29 times in 2.9 s)"), kept.messages()
    limited.tell_due()
    clock.now = 15.0
    limited.handle(refused(1))  # within the interval of the line that told
    assert len(kept.records) == 2
    clock.now = 20.0
    limited.tell_due()
    assert kept.messages()[2].endswith("(repeated 1 times in 5.0 s)"), kept.messages()
    limited.close()
    assert len(kept.records) == 3  # each told once


def test_close_tells_what_is_held_back(
    clock: Clock, kept: Kept, limited: RepeatLimitingHandler
) -> None:
    limited.handle(refused(1))
    clock.now = 1.0
    limited.handle(refused(1))
    limited.close()
    assert kept.messages()[-1].endswith("(repeated 1 times in 1.0 s)"), kept.messages()


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()


@pytest.mark.usefixtures("restored_logging")
@pytest.mark.parametrize(("interval", "lines"), [(10.0, 2), (0.0, 3)])
def test_the_process_log_is_limited_unless_the_interval_is_zero(
    interval: float, lines: int
) -> None:
    out = io.StringIO()
    configure(LogSettings(repeat_interval_seconds=interval), stream=out)
    library = logging.getLogger("aiokafka")
    for node in (1, 2, 3):  # well within 10 s of each other
        library.error(REFUSED, node, ConnectionRefusedError(111, "Connect call failed"))
    configure(LogSettings(repeat_interval_seconds=interval), stream=out)  # closes the first
    logged = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(logged) == lines, logged
    assert logged[0]["logger"] == "aiokafka"
    if interval:
        assert logged[1]["repeated"] == 2, logged[1]
        assert logged[1]["event"].endswith(
            " times in " + str(logged[1]["repeated_seconds"]) + " s)"
        )


class SlowStream(io.StringIO):
    """A stream that gives other threads the interpreter between any two writes."""

    def write(self, text: str) -> int:
        time.sleep(0.0001)
        return super().write(text)


@pytest.mark.usefixtures("restored_logging")
def test_lines_from_structlog_and_a_library_thread_never_share_a_line() -> None:
    out = SlowStream()
    configure(LogSettings(repeat_interval_seconds=0), stream=out)
    each = 300

    def library() -> None:
        for n in range(each):
            logging.getLogger("aiokafka").warning("library line %d", n)

    thread = threading.Thread(target=library)
    thread.start()
    ours = structlog.get_logger("controller")
    for n in range(each):
        ours.info("our line", n=n)
    thread.join()
    logged = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(logged) == 2 * each
    assert sum(1 for line in logged if line.get("logger") == "aiokafka") == each
