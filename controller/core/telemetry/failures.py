"""Crashes and exceptions in OTLP: which spans' events and log records count, and as what.

* A span event named ``exception`` (the semantic conventions' exception event, as
  ``span.record_exception`` and the instrumentations' error handling write it, with
  ``exception.type``, ``exception.message``, ``exception.stacktrace``) is one exception.
* A log record of severity ERROR or FATAL (``severity_number`` 17 to 24) is one exception;
  a FATAL one (21 to 24) is also a crash: the app could not go on.

Each is a *failure* of its trace, attributed as a conversion is
(:mod:`controller.core.telemetry.translating`): to every flag evaluated in the same trace
whose plan guards ``crash_count``, ``exception_count`` or ``new_failures``, for that
evaluation's unit, arm and version, whichever of the two arrives first. Its id derives from the
trace, the span (or record) and the flag, so a re-sent export counts once. Each carries its
fingerprint (:mod:`controller.core.telemetry.fingerprints`): made as the span or record is
read, so what waits for its evaluation is the short name and example, not the stack trace.
Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from controller.core.telemetry.attribution import event_id, ts_ms
from controller.core.telemetry.fingerprints import exception_fingerprint
from controller.core.telemetry.flag_rules import FlagRules
from controller.core.telemetry.recording import Counted, Run
from controller.core.telemetry.signals import Attributes, LogRecord, Span
from controller.core.telemetry.timing import Window
from controller.core.wire import CrashIn, ExceptionIn

EXCEPTION_EVENT: Final = "exception"
"""The span event the semantic conventions record an exception as."""
ERROR_SEVERITY: Final = 17
FATAL_SEVERITY: Final = 21
MAX_SEVERITY: Final = 24
"""OTLP's severity numbers: 17-20 ERROR, 21-24 FATAL; past 24 none is defined."""
EXCEPTION: Final = "~exception"
CRASH: Final = "~crash"
FAILURES: Final = frozenset({EXCEPTION, CRASH})
"""What a failure is joined as: names no conversion can have (a conversion's starts with a
letter), so the join's conversions and failures never mix."""
FAILURE: Final = "failure"
EXAMPLE: Final = "example"
"""The two attributes a failure keeps (:func:`_named`), as its event's fields."""
ID_KINDS: Final = {CRASH: "k", EXCEPTION: "q"}
"""The kind each failure's event id derives from (:func:`~.attribution.event_id`)."""

Failure = tuple[str, str, str, int, Attributes]
"""What a span or record gives: its join name, its trace, its anchor (what its id derives
from), its time in epoch ms, and its attributes."""


def span_failures(spans: Iterable[Span], window: Window) -> Iterator[Failure]:
    """The spans' exception events, each one exception (at its span's end when the event's
    own time is implausible)."""
    earliest, latest = window.earliest_ns, window.latest_ns
    for span in spans:
        for index, event in enumerate(span.events):
            if event.name == EXCEPTION_EVENT:
                at = event.time_ns if earliest <= event.time_ns <= latest else span.end_ns
                named = _named(event.attributes)
                yield EXCEPTION, span.trace_id, f"{span.span_id}:e{index}", ts_ms(at), named


def record_failures(index: int, record: LogRecord, run: Run) -> list[Failure]:
    """An ERROR record's exception, and a FATAL record's crash too; none for another, nor
    for one at an implausible time (refused as such)."""
    severity = record.severity
    if not ERROR_SEVERITY <= severity <= MAX_SEVERITY:
        return []
    if not run.window.holds(record.time_ns):
        run.refuse_time(index, f"severity {severity}: {run.window.fault(record.time_ns)}")
        return []
    trace_id, ts = record.trace_id, ts_ms(record.time_ns)
    anchor = f"{record.span_id or 'log'}:{record.time_ns}"
    exception: Failure = (EXCEPTION, trace_id, anchor, ts, _named(record.attributes))
    return [exception] if severity < FATAL_SEVERITY else [exception, (CRASH, *exception[1:])]


def _named(attributes: Attributes) -> Attributes:
    """What a failure keeps of its attributes: its fingerprint's name and example alone."""
    found = exception_fingerprint(attributes)
    if found is None:
        return {}
    return {FAILURE: found.title, EXAMPLE: found.example}


def credits(rules: FlagRules, name: str) -> bool:
    """Whether a conversion or failure joined as ``name`` counts for the flag of ``rules``."""
    return name in rules.conversions or (rules.failures and name in FAILURES)


def failure_event(
    name: str, trace_id: str, anchor: str, ts: int, counted: Counted, *, named: Attributes
) -> CrashIn | ExceptionIn:
    """The event a failure gives for an evaluation ``counted`` in its trace; ``named``: what
    :func:`_named` kept of it."""
    kind = CrashIn if name == CRASH else ExceptionIn
    failure, example = named.get(FAILURE), named.get(EXAMPLE)
    return kind(
        v=1,
        id=event_id(ID_KINDS[name], trace_id, anchor, counted.flag),
        ts=ts,
        flag=counted.flag,
        unit=counted.unit,
        arm=counted.arm,
        flag_version=counted.version,
        failure=failure if isinstance(failure, str) and failure else None,
        example=example if isinstance(example, str) and example else None,
    )
