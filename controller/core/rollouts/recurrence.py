"""Recurrence rules (RFC 5545 ``RRULE``) read in an IANA time zone, with bounded work.

The calendar is python-dateutil's ``rrule`` and the standard library's
``zoneinfo``; nothing here does calendar arithmetic of its own. A rule is
expanded in *wall time* (naive local date-times, anchored at ``start``) and
each occurrence is then read in the zone:

* a wall time that does not exist (the hour skipped when clocks go forward)
  is read with the offset before the change (PEP 495, ``fold=0``): 02:30 on
  the spring-forward night in Europe/Berlin is 01:30 UTC, which the clocks
  show as 03:30;
* a wall time that happens twice (the hour repeated when clocks go back) is
  its first, daylight-saving, instance.

An occurrence lasts ``duration`` of elapsed time, as RFC 5545 reads an hour
duration: 09:00 for 8 hours ends at 17:00 on any day whose clocks do not
change in between, and a night freeze from 22:00 for 10 hours ends at 07:00
on the clock the night clocks go back (09:00 the night they go forward).

Work is bounded: only ``DAILY``, ``WEEKLY``, ``MONTHLY`` and ``YEARLY``
rules (a release window does not open every minute), at most
:data:`MAX_PER_YEAR` openings a year, a rule must open within
:data:`HORIZON` of its start, and a query examines at most
:data:`MAX_EXAMINED` occurrences before it gives up (:class:`TooCostly`).
Compiled rules are cached, so each query walks a list rather than the
calendar again.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr

from controller.core.common import ControllerError

FREQUENCIES = frozenset({"DAILY", "WEEKLY", "MONTHLY", "YEARLY"})
"""The frequencies a window may recur at; finer ones make no release window."""
MAX_RULE_TEXT = 512
HORIZON = timedelta(days=3653)
"""Ten years: a rule that does not open within it of its start is refused (a
leap-day rule opens within four years, eight across a skipped century leap year)."""
MAX_PER_YEAR = 1500
"""Openings in a rule's first year past which it is refused (about four a day)."""
MAX_COUNT = 100_000
"""The most occurrences ``COUNT`` may ask for: a day's window for 270 years."""
RULE_PARTS = frozenset(
    {"FREQ", "UNTIL", "COUNT", "INTERVAL", "BYSECOND", "BYMINUTE", "BYHOUR", "BYDAY"}
    | {"BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYMONTH", "BYSETPOS", "WKST"}
)
"""RFC 5545's rule parts: what a window's rule may hold."""
_LONG_NUMBER = re.compile(r"\d{5,}")
"""No part of a calendar rule but COUNT needs a number of five digits."""
MAX_EXAMINED = 100_000
"""Occurrences one query may walk before it gives up and the caller fails closed."""
# Wall times: naive on purpose, read in a window's zone only when an occurrence is.
EARLIEST = datetime(2000, 1, 1)  # noqa: DTZ001
LATEST = datetime(2100, 1, 1)  # noqa: DTZ001
DEFAULT_START = datetime(2024, 1, 1)  # noqa: DTZ001
"""The anchor (RFC 5545 ``DTSTART``) when a window names none: a Monday at 00:00.
What a rule leaves out is taken from it: the time of day, the weekday, the day."""

_RULE_TEXT = re.compile(r"^[A-Z0-9=;,+\-]+$")
_ZONE_TEXT = re.compile(r"^[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+){0,2}$")


_MACHINE_ZONES = frozenset({"localtime", "posixrules", "Factory"})
"""Files of a zoneinfo directory that are no place: what they mean is set per machine."""
_MACHINE_ZONE_DIRS = ("posix/", "right/")
"""Copies of the database some systems keep (``right/`` counts leap seconds)."""


class TooCostly(ControllerError):
    """A query would walk more than :data:`MAX_EXAMINED` occurrences."""


def zone(key: str) -> ZoneInfo:
    """The IANA time zone ``key``; ValueError names what is wrong with it."""
    if len(key) > 64 or not _ZONE_TEXT.match(key):
        raise ValueError("not an IANA time zone name such as Europe/Berlin")
    if key in _MACHINE_ZONES or key.startswith(_MACHINE_ZONE_DIRS):
        raise ValueError(
            f"{key!r} depends on the machine that reads it: name an IANA time zone"
            " such as Europe/Berlin"
        )
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {key!r}") from None


def parse_rule(text: str) -> dict[str, str]:
    """An RRULE's parts (``FREQ`` → ``WEEKLY``, …), checked for what windows allow.

    Only the rule itself (``RRULE:`` may lead): no ``DTSTART``, no second line,
    ``UNTIL`` in the window's wall time (no ``Z``).
    """
    body = text.strip().upper().removeprefix("RRULE:")
    if not body or len(body) > MAX_RULE_TEXT or not _RULE_TEXT.match(body):
        raise ValueError("not a recurrence rule such as FREQ=WEEKLY;BYDAY=MO;BYHOUR=9")
    parts: dict[str, str] = {}
    for part in body.split(";"):
        key, sep, value = part.partition("=")
        if not sep or not value or key in parts:
            raise ValueError(f"malformed recurrence rule part {part[:40]!r}")
        parts[key] = value
    _check_parts(parts)
    freq = parts.get("FREQ")
    if freq is None:
        raise ValueError("a recurrence rule needs FREQ")
    if freq not in FREQUENCIES:
        raise ValueError(f"FREQ={freq[:20]} is not allowed; use DAILY, WEEKLY, MONTHLY or YEARLY")
    if parts.get("UNTIL", "").endswith("Z"):
        raise ValueError("UNTIL is the window's wall time, without Z")
    return parts


def _check_parts(parts: dict[str, str]) -> None:
    """Only RFC 5545's parts, with numbers of a size a calendar has: dateutil reads
    extensions of its own (``BYEASTER``) and fails on huge numbers with errors
    other than ValueError."""
    unknown = sorted(set(parts) - RULE_PARTS)
    if unknown:
        raise ValueError(
            f"malformed recurrence rule: {unknown[0][:20]} is not one of RFC 5545's parts"
        )
    for key, value in parts.items():
        if key not in ("FREQ", "UNTIL", "WKST", "COUNT") and _LONG_NUMBER.search(value):
            raise ValueError(f"{key}: a number out of range")
    count = parts.get("COUNT", "")
    if count.isdigit() and (len(count) > 6 or int(count) > MAX_COUNT):
        raise ValueError(f"COUNT must be at most {MAX_COUNT:,}")
    # An ordinal counts weekdays within the month or the year (RFC 5545 BYDAY).
    monthly = parts.get("FREQ") == "MONTHLY" or "BYMONTH" in parts
    most = 5 if monthly else 53
    for day in parts.get("BYDAY", "").split(",") if "BYDAY" in parts else ():
        ordinal = day[:-2].lstrip("+-")
        if ordinal and (not ordinal.isdigit() or not 1 <= int(ordinal) <= most):
            raise ValueError(f"BYDAY={day[:12]}: an ordinal is from 1 to {most}, or -{most} to -1")


def compile_rule(text: str, start: datetime) -> rrule:
    """The rule anchored at ``start`` (naive wall time); ValueError if it cannot be read."""
    parse_rule(text)
    return _compiled(text.strip().upper().removeprefix("RRULE:"), start)


@functools.lru_cache(maxsize=512)
def _compiled(body: str, start: datetime) -> rrule:
    try:
        rule = rrulestr(body, dtstart=start, cache=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"malformed recurrence rule: {str(exc)[:120]}") from None
    if not isinstance(rule, rrule):  # pragma: no cover - one RRULE line is always an rrule
        raise TypeError("malformed recurrence rule")
    return rule


def check_rule(text: str, start: datetime) -> None:
    """Refuse a rule that never opens within :data:`HORIZON`, or opens too often.

    Remembered: a stored rollout's plan is read again on every load.
    """
    problem = _problem(text.strip().upper().removeprefix("RRULE:"), start)
    if problem is not None:
        raise ValueError(problem)


@functools.lru_cache(maxsize=512)
def _problem(text: str, start: datetime) -> str | None:
    try:
        _check(text, start)
    except ValueError as exc:
        return str(exc)
    return None


def _check(text: str, start: datetime) -> None:
    """What :func:`check_rule` refuses.

    dateutil walks a rule that never matches to the year 9999 before it gives
    up (seconds for a daily one). The Gregorian calendar repeats every 400
    years, weekdays included, so the check runs on the same rule moved as many
    whole 400-year cycles forward as keep its ``INTERVAL`` in step, where the
    walk to 9999 is short.
    """
    parts = parse_rule(text)
    if parts.get("COUNT") == "0":
        raise ValueError("COUNT=0 never opens")
    years = _shift(parts, start)
    end = start + HORIZON
    if "UNTIL" in parts:
        end = min(end, _until(parts["UNTIL"]))
    moved = compile_rule(text, start).replace(
        dtstart=_moved(start, years), until=_moved(end, years), count=None
    )
    count = int(parts["COUNT"]) if parts.get("COUNT", "").isdigit() else None
    first_year, year_end = 0, _moved(start + timedelta(days=366), years)
    for seen, occurrence in enumerate(itertools.islice(moved, count), 1):
        if occurrence >= year_end:
            break
        first_year = seen
        if first_year > MAX_PER_YEAR:
            raise ValueError(f"opens more than {MAX_PER_YEAR} times a year")
    else:
        if first_year == 0:
            raise ValueError(f"never opens within {HORIZON.days // 365} years of its start")


_CYCLE = {"DAILY": 146_097, "WEEKLY": 20_871, "MONTHLY": 4_800, "YEARLY": 400}
"""Periods of each frequency in 400 Gregorian years."""


def _shift(parts: dict[str, str], start: datetime) -> int:
    """Whole 400-year cycles (in years) to move the check by, ``INTERVAL`` kept in step."""
    interval = int(parts["INTERVAL"]) if parts.get("INTERVAL", "").isdigit() else 1
    if not 1 <= interval <= 1000:
        raise ValueError("INTERVAL must be from 1 to 1000")
    step = interval // math.gcd(interval, _CYCLE[parts["FREQ"]])  # cycles per in-step move
    room = (9999 - 11 - start.year) // 400  # cycles that fit before dateutil's last year
    cycles = room - room % step
    if cycles <= 0:
        raise ValueError(f"INTERVAL={interval} is not supported with FREQ={parts['FREQ']}")
    return cycles * 400


def _moved(moment: datetime, years: int) -> datetime:
    return moment.replace(year=moment.year + years)  # 400-year cycles keep 29 February


def _until(text: str) -> datetime:
    for shape in ("%Y%m%dT%H%M%S", "%Y%m%d"):
        try:
            return datetime.strptime(text, shape)  # noqa: DTZ007 - wall time, as DTSTART
        except ValueError:
            continue
    raise ValueError("UNTIL must look like 20261231 or 20261231T170000")


def _walk(rule: rrule, until: datetime) -> Iterator[datetime]:
    """Occurrences (wall time) up to ``until``, at most :data:`MAX_EXAMINED` of them."""
    for examined, occurrence in enumerate(rule):
        if occurrence > until:
            return
        if examined >= MAX_EXAMINED:
            raise TooCostly(f"more than {MAX_EXAMINED} occurrences to examine")
        yield occurrence


def closes_after(rule: rrule, duration: timedelta, tz: ZoneInfo, moment: datetime) -> bool:
    """Whether an occurrence is still open at ``moment`` or opens after it: False once a
    ``COUNT`` or ``UNTIL`` has ended the rule. Bounded as :func:`intervals` is."""
    wall_lo = wall(moment, tz) - duration - timedelta(days=1)
    for occurrence in _walk(rule, datetime.max):  # noqa: DTZ901 - wall time, as the rule
        if occurrence >= wall_lo and instant(occurrence, tz) + duration > moment:
            return True
    return False


def instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive wall time in ``tz`` as an aware UTC instant (``fold=0``: see the module)."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def wall(moment: datetime, tz: ZoneInfo) -> datetime:
    """An aware instant as naive wall time in ``tz``."""
    return moment.astimezone(tz).replace(tzinfo=None)


def intervals(
    rule: rrule, duration: timedelta, tz: ZoneInfo, lo: datetime, hi: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """The occurrences ``[opens, closes)`` (aware, UTC) that overlap ``[lo, hi]``.

    Walks from a day before ``lo`` less the duration, in wall time, so an
    occurrence that opened before ``lo`` and is still open is not missed
    whatever the offset did.
    """
    wall_lo = wall(lo, tz) - duration - timedelta(days=1)
    wall_hi = wall(hi, tz) + timedelta(days=1)
    for occurrence in _walk(rule, wall_hi):
        if occurrence < wall_lo:
            continue
        opens = instant(occurrence, tz)
        closes = opens + duration
        if closes > lo and opens <= hi:
            yield opens, closes
