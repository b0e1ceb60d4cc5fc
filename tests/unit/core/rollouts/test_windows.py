"""Release windows: when a rollout may move forward, across DST changes and leap days."""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from controller.core.common.errors import ConfigError
from controller.core.rollouts import recurrence
from controller.core.rollouts.plan import parse_plan
from controller.core.rollouts.windows import (
    Window,
    Windows,
    may_move_forward,
    next_opening,
    waiting_reason,
)

WEEKDAYS_9 = "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0;BYSECOND=0"
_WINDOWS = TypeAdapter(Windows)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def windows(*specs: dict[str, Any]) -> tuple[Window, ...]:
    return _WINDOWS.validate_python(list(specs))


BERLIN_HOURS = {"kind": "allow", "timezone": "Europe/Berlin", "rule": WEEKDAYS_9, "duration": "8h"}
NY_HOURS = {**BERLIN_HOURS, "timezone": "America/New_York"}


def daily_at(
    hour: int, minute: int, zone: str, duration: str, kind: str = "allow"
) -> dict[str, Any]:
    rule = f"FREQ=DAILY;BYHOUR={hour};BYMINUTE={minute};BYSECOND=0"
    return {"kind": kind, "timezone": zone, "rule": rule, "duration": duration}


CHRISTMAS_SPEC: dict[str, Any] = {
    "kind": "deny",
    "name": "christmas",
    "timezone": "Europe/Berlin",
    "from": "2026-12-21T00:00:00",
    "to": "2027-01-04T00:00:00",
}
JANUARY_SPEC: dict[str, Any] = {
    "kind": "deny",
    "name": "inventory",
    "timezone": "Europe/Berlin",
    "from": "2027-01-03T00:00:00",
    "to": "2027-01-10T00:00:00",
}

# (what, windows, now (UTC), may move forward)
CASES: list[tuple[str, tuple[dict[str, Any], ...], datetime, bool]] = [
    ("no windows: always", (), utc(2026, 11, 21, 3), True),
    ("Berlin business hours, Friday 16:59 CET", (BERLIN_HOURS,), utc(2026, 11, 20, 15, 59), True),
    ("Berlin, Friday 17:00 CET: closed", (BERLIN_HOURS,), utc(2026, 11, 20, 16, 0), False),
    ("Berlin, Saturday noon", (BERLIN_HOURS,), utc(2026, 11, 21, 11), False),
    ("Berlin, Monday 09:00 CET opens", (BERLIN_HOURS,), utc(2026, 11, 23, 8), True),
    ("Berlin, Monday 08:59 CET", (BERLIN_HOURS,), utc(2026, 11, 23, 7, 59), False),
    # Spring forward (29 Mar 2026): Friday before is CET (+1), Monday after CEST (+2).
    ("Berlin, Fri 27 Mar 09:00 CET", (BERLIN_HOURS,), utc(2026, 3, 27, 8), True),
    ("Berlin, Fri 27 Mar 07:30 UTC", (BERLIN_HOURS,), utc(2026, 3, 27, 7, 30), False),
    ("Berlin, Mon 30 Mar 09:00 CEST", (BERLIN_HOURS,), utc(2026, 3, 30, 7), True),
    ("Berlin, Mon 30 Mar 17:00 CEST closed", (BERLIN_HOURS,), utc(2026, 3, 30, 15), False),
    # Fall back (25 Oct 2026): Monday after is CET again.
    ("Berlin, Mon 26 Oct 09:00 CET", (BERLIN_HOURS,), utc(2026, 10, 26, 8), True),
    ("Berlin, Mon 26 Oct 07:30 UTC", (BERLIN_HOURS,), utc(2026, 10, 26, 7, 30), False),
    ("Berlin, Mon 26 Oct 16:59 CET", (BERLIN_HOURS,), utc(2026, 10, 26, 15, 59), True),
    ("Berlin, Mon 26 Oct 17:00 CET closed", (BERLIN_HOURS,), utc(2026, 10, 26, 16), False),
    # New York changes on other days (8 Mar and 1 Nov 2026).
    ("New York, Fri 6 Mar 09:00 EST", (NY_HOURS,), utc(2026, 3, 6, 14), True),
    ("New York, Mon 9 Mar 09:00 EDT", (NY_HOURS,), utc(2026, 3, 9, 13), True),
    ("New York, Mon 9 Mar 17:00 EDT closed", (NY_HOURS,), utc(2026, 3, 9, 21), False),
    ("New York, Mon 2 Nov 08:30 EST", (NY_HOURS,), utc(2026, 11, 2, 13, 30), False),
    ("New York, Mon 2 Nov 09:00 EST", (NY_HOURS,), utc(2026, 11, 2, 14), True),
    ("New York, Mon 2 Nov 17:00 EST closed", (NY_HOURS,), utc(2026, 11, 2, 22), False),
    # 02:30 on spring-forward night does not exist: read with the offset before the
    # change, it is 01:30 UTC in Berlin (03:30 on the clock), 07:30 UTC in New York.
    (
        "Berlin 02:30 on 29 Mar opens at 01:30 UTC",
        (daily_at(2, 30, "Europe/Berlin", "1h"),),
        utc(2026, 3, 29, 1, 30),
        True,
    ),
    (
        "Berlin 02:30 on 29 Mar: not yet at 01:29 UTC",
        (daily_at(2, 30, "Europe/Berlin", "1h"),),
        utc(2026, 3, 29, 1, 29),
        False,
    ),
    (
        "Berlin 02:30 for 1h on 29 Mar closes at 02:30 UTC",
        (daily_at(2, 30, "Europe/Berlin", "1h"),),
        utc(2026, 3, 29, 2, 30),
        False,
    ),
    (
        "New York 02:30 on 8 Mar opens at 07:30 UTC",
        (daily_at(2, 30, "America/New_York", "1h"),),
        utc(2026, 3, 8, 7, 30),
        True,
    ),
    (
        "New York 02:30 on 8 Mar: not at 06:45 UTC (01:45 EST)",
        (daily_at(2, 30, "America/New_York", "1h"),),
        utc(2026, 3, 8, 6, 45),
        False,
    ),
    # 02:30 happens twice when Berlin falls back: the first (CEST, 00:30 UTC) is meant.
    (
        "Berlin 02:30 on 25 Oct: the first one, 00:30 UTC",
        (daily_at(2, 30, "Europe/Berlin", "30m"),),
        utc(2026, 10, 25, 0, 45),
        True,
    ),
    (
        "Berlin 02:30 on 25 Oct: not the second one, 01:30 UTC",
        (daily_at(2, 30, "Europe/Berlin", "30m"),),
        utc(2026, 10, 25, 1, 45),
        False,
    ),
    (
        "New York 01:30 on 1 Nov: the first one (EDT, 05:30 UTC)",
        (daily_at(1, 30, "America/New_York", "30m"),),
        utc(2026, 11, 1, 5, 45),
        True,
    ),
    (
        "New York 01:30 on 1 Nov: not the second (EST, 06:30 UTC)",
        (daily_at(1, 30, "America/New_York", "30m"),),
        utc(2026, 11, 1, 6, 45),
        False,
    ),
    # A night freeze lasts elapsed time: 22:00 CEST for 10h ends 07:00 CET after clocks go back.
    (
        "Berlin night freeze 22:00+10h, 25 Oct 06:30 CET still frozen",
        (daily_at(22, 0, "Europe/Berlin", "10h", "deny"),),
        utc(2026, 10, 25, 5, 30),
        False,
    ),
    (
        "Berlin night freeze, 25 Oct 07:00 CET over",
        (daily_at(22, 0, "Europe/Berlin", "10h", "deny"),),
        utc(2026, 10, 25, 6),
        True,
    ),
    (
        "Berlin night freeze, 29 Mar 08:30 CEST still frozen",
        (daily_at(22, 0, "Europe/Berlin", "10h", "deny"),),
        utc(2026, 3, 29, 6, 30),
        False,
    ),
    # New York's night freeze, elapsed time too: 22:00 EST + 10h is 09:00 EDT the night
    # clocks go forward, 22:00 EDT + 10h is 07:00 EST the night they go back.
    (
        "New York night freeze, 8 Mar 08:30 EDT still frozen",
        (daily_at(22, 0, "America/New_York", "10h", "deny"),),
        utc(2026, 3, 8, 12, 30),
        False,
    ),
    (
        "New York night freeze, 8 Mar 09:00 EDT over",
        (daily_at(22, 0, "America/New_York", "10h", "deny"),),
        utc(2026, 3, 8, 13),
        True,
    ),
    (
        "New York night freeze, 1 Nov 06:30 EST still frozen",
        (daily_at(22, 0, "America/New_York", "10h", "deny"),),
        utc(2026, 11, 1, 11, 30),
        False,
    ),
    (
        "New York night freeze, 1 Nov 07:00 EST over",
        (daily_at(22, 0, "America/New_York", "10h", "deny"),),
        utc(2026, 11, 1, 12),
        True,
    ),
    # Leap days.
    (
        "leap-day freeze on 29 Feb 2028",
        ({"kind": "deny", "rule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "duration": "1d"},),
        utc(2028, 2, 29, 12),
        False,
    ),
    (
        "leap-day freeze: 1 Mar 2028 free",
        ({"kind": "deny", "rule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "duration": "1d"},),
        utc(2028, 3, 1, 0),
        True,
    ),
    (
        "leap-day freeze: 28 Feb 2027 free, no 29th",
        ({"kind": "deny", "rule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "duration": "1d"},),
        utc(2027, 2, 28, 23, 59),
        True,
    ),
    (
        "last day of February is the 29th in 2028",
        ({"kind": "deny", "rule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1", "duration": "1d"},),
        utc(2028, 2, 29, 12),
        False,
    ),
    (
        "last day of February is the 28th in 2027",
        ({"kind": "deny", "rule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1", "duration": "1d"},),
        utc(2027, 2, 28, 12),
        False,
    ),
    (
        "a one-off freeze over the leap day holds on the 29th",
        ({"kind": "deny", "from": "2028-02-28T12:00:00", "to": "2028-03-01T12:00:00"},),
        utc(2028, 2, 29, 23),
        False,
    ),
    # Overlapping allow and deny: deny wins.
    (
        "lunch freeze inside business hours",
        (BERLIN_HOURS, daily_at(12, 0, "Europe/Berlin", "1h", "deny")),
        utc(2026, 11, 24, 11, 30),
        False,
    ),
    (
        "after the lunch freeze",
        (BERLIN_HOURS, daily_at(12, 0, "Europe/Berlin", "1h", "deny")),
        utc(2026, 11, 24, 12),
        True,
    ),
    (
        "Christmas freeze over business hours",
        (
            BERLIN_HOURS,
            {
                "kind": "deny",
                "name": "christmas",
                "timezone": "Europe/Berlin",
                "from": "2026-12-21T00:00:00",
                "to": "2027-01-04T00:00:00",
            },
        ),
        utc(2026, 12, 23, 10),
        False,
    ),
    (
        "a deny window alone leaves the rest open",
        (daily_at(12, 0, "Europe/Berlin", "1h", "deny"),),
        utc(2026, 11, 21, 3),
        True,
    ),
    (
        "a freeze that overlaps the opening of business hours",
        (BERLIN_HOURS, daily_at(8, 0, "Europe/Berlin", "2h", "deny")),
        utc(2026, 11, 24, 8, 30),
        False,
    ),
    (
        "two overlapping allow windows, inside both",
        (BERLIN_HOURS, daily_at(16, 0, "Europe/Berlin", "4h")),
        utc(2026, 11, 24, 15, 30),
        True,
    ),
    (
        "two overlapping freezes inside business hours: the later one still holds",
        (BERLIN_HOURS, CHRISTMAS_SPEC, JANUARY_SPEC),
        utc(2027, 1, 5, 10),
        False,
    ),
    (
        "two allow windows, in the second",
        (BERLIN_HOURS, daily_at(20, 0, "UTC", "2h")),
        utc(2026, 11, 21, 21),
        True,
    ),
]


@pytest.mark.parametrize(
    ("specs", "now", "allowed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_may_move_forward(specs: tuple[dict[str, Any], ...], now: datetime, allowed: bool) -> None:
    verdict = may_move_forward(windows(*specs), now)
    assert verdict.allowed is allowed, verdict.reason


CHRISTMAS = CHRISTMAS_SPEC
LEAP_DAY = {
    "kind": "allow",
    "timezone": "Europe/Berlin",
    "rule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
    "duration": "1d",
}

# (what, windows, now, next opening)
NEXT: list[tuple[str, tuple[dict[str, Any], ...], datetime, datetime | None]] = [
    ("open now", (BERLIN_HOURS,), utc(2026, 11, 23, 9), utc(2026, 11, 23, 9)),
    (
        "Friday 17:55 → Monday 09:00 CET",
        (BERLIN_HOURS,),
        utc(2026, 11, 20, 16, 55),
        utc(2026, 11, 23, 8),
    ),
    (
        "Friday before spring forward → Monday 09:00 CEST",
        (BERLIN_HOURS,),
        utc(2026, 3, 27, 17),
        utc(2026, 3, 30, 7),
    ),
    (
        "New York Friday before fall back → Monday 09:00 EST",
        (NY_HOURS,),
        utc(2026, 10, 30, 22),
        utc(2026, 11, 2, 14),
    ),
    (
        "Berlin Friday before fall back → Monday 09:00 CET",
        (BERLIN_HOURS,),
        utc(2026, 10, 23, 16),
        utc(2026, 10, 26, 8),
    ),
    (
        "New York Friday before spring forward → Monday 09:00 EDT",
        (NY_HOURS,),
        utc(2026, 3, 6, 22),
        utc(2026, 3, 9, 13),
    ),
    (
        "a morning freeze over the opening → its end at 10:00",
        (BERLIN_HOURS, daily_at(8, 0, "Europe/Berlin", "2h", "deny")),
        utc(2026, 11, 24, 6),
        utc(2026, 11, 24, 9),
    ),
    (
        "two overlapping freezes → the first weekday 09:00 after the later",
        (BERLIN_HOURS, CHRISTMAS, JANUARY_SPEC),
        utc(2026, 12, 23, 10),
        utc(2027, 1, 11, 8),
    ),
    (
        "lunch freeze → 13:00",
        (BERLIN_HOURS, daily_at(12, 0, "Europe/Berlin", "1h", "deny")),
        utc(2026, 11, 24, 11, 10),
        utc(2026, 11, 24, 12),
    ),
    (
        "Christmas freeze → first weekday 09:00 after",
        (BERLIN_HOURS, CHRISTMAS),
        utc(2026, 12, 23, 10),
        utc(2027, 1, 4, 8),
    ),
    ("a freeze alone → its end", (CHRISTMAS,), utc(2026, 12, 23, 10), utc(2027, 1, 3, 23)),
    ("leap day from March 2026 → 29 Feb 2028", (LEAP_DAY,), utc(2026, 3, 1), utc(2028, 2, 28, 23)),
    (
        "leap day across 2100, which has none → 29 Feb 2104",
        ({**LEAP_DAY, "start": "2097-01-01T00:00:00"},),
        utc(2097, 3, 1),
        utc(2104, 2, 28, 23),
    ),
    (
        "a one-off allow in the past: never",
        ({"kind": "allow", "from": "2025-01-01T00:00:00", "to": "2025-01-02T00:00:00"},),
        utc(2026, 1, 1),
        None,
    ),
]


@pytest.mark.parametrize(
    ("specs", "now", "expected"), [c[1:] for c in NEXT], ids=[c[0] for c in NEXT]
)
def test_next_opening(
    specs: tuple[dict[str, Any], ...], now: datetime, expected: datetime | None
) -> None:
    assert next_opening(windows(*specs), now) == expected


def test_the_waiting_reason_says_when_and_where() -> None:
    friday = utc(2026, 11, 20, 16, 55)  # 17:55 in Berlin
    reason = waiting_reason(windows(BERLIN_HOURS), friday)
    assert reason == "ready, waiting for the window that opens Mon 09:00 Europe/Berlin"
    far = waiting_reason(windows(LEAP_DAY), utc(2026, 3, 1))
    assert far == "ready, waiting for the window that opens Tue 29 Feb 2028 00:00 Europe/Berlin"


def test_a_deny_verdict_names_the_window_and_its_end() -> None:
    verdict = may_move_forward(windows(BERLIN_HOURS, CHRISTMAS), utc(2026, 12, 23, 10))
    assert verdict.window == "christmas"
    assert "christmas" in verdict.reason
    assert "04 Jan 2027 00:00 Europe/Berlin" in verdict.reason


# (what, spec, field named in the error, words in it)
REFUSED: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "unknown zone",
        {**BERLIN_HOURS, "timezone": "Europe/Atlantis"},
        "timezone",
        "unknown time zone",
    ),
    ("a path for a zone", {**BERLIN_HOURS, "timezone": "../../etc/passwd"}, "timezone", "IANA"),
    ("the machine's zone", {**BERLIN_HOURS, "timezone": "localtime"}, "timezone", "machine"),
    ("the zone of posix rules", {**BERLIN_HOURS, "timezone": "posixrules"}, "timezone", "IANA"),
    ("an unset zone", {**BERLIN_HOURS, "timezone": "Factory"}, "timezone", "IANA"),
    ("a posix copy", {**BERLIN_HOURS, "timezone": "posix/Europe/Berlin"}, "timezone", "IANA"),
    ("a leap-second copy", {**BERLIN_HOURS, "timezone": "right/UTC"}, "timezone", "IANA"),
    ("malformed rule", {**BERLIN_HOURS, "rule": "FREQ=WEEKLY;BYDAY"}, "rule", "malformed"),
    ("unknown rule part", {**BERLIN_HOURS, "rule": "FREQ=WEEKLY;BYFOO=1"}, "rule", "malformed"),
    ("no FREQ", {**BERLIN_HOURS, "rule": "BYDAY=MO"}, "rule", "FREQ"),
    ("minutely", {**BERLIN_HOURS, "rule": "FREQ=MINUTELY"}, "rule", "not allowed"),
    ("secondly", {**BERLIN_HOURS, "rule": "FREQ=SECONDLY"}, "rule", "not allowed"),
    (
        "a DTSTART line",
        {**BERLIN_HOURS, "rule": "DTSTART:20260101T000000\nRRULE:FREQ=DAILY"},
        "rule",
        "not a recurrence rule",
    ),
    (
        "UNTIL in UTC",
        {**BERLIN_HOURS, "rule": "FREQ=DAILY;UNTIL=20300101T000000Z"},
        "rule",
        "without Z",
    ),
    (
        "30 February never comes",
        {**BERLIN_HOURS, "rule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"},
        "rule",
        "never opens",
    ),
    (
        "daily, impossible",
        {**BERLIN_HOURS, "rule": "FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31"},
        "rule",
        "never opens",
    ),
    ("COUNT=0", {**BERLIN_HOURS, "rule": "FREQ=DAILY;COUNT=0"}, "rule", "never opens"),
    (
        "31 February, monthly",
        {**BERLIN_HOURS, "rule": "FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=31"},
        "rule",
        "never opens",
    ),
    (
        "29 February past the last leap year before 2100",
        {
            **LEAP_DAY,
            "start": "2097-01-01T00:00:00",
            "rule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;UNTIL=21030101",
        },
        "rule",
        "never opens",
    ),
    (
        "a weekday that is none",
        {**BERLIN_HOURS, "rule": "FREQ=WEEKLY;BYDAY=XX"},
        "rule",
        "malformed",
    ),
    ("INTERVAL=0", {**BERLIN_HOURS, "rule": "FREQ=DAILY;INTERVAL=0"}, "rule", "INTERVAL"),
    (
        "COUNT of 400 digits",
        {**BERLIN_HOURS, "rule": "FREQ=DAILY;COUNT=" + "9" * 400},
        "rule",
        "COUNT must be at most 100,000",
    ),
    (
        "a huge hour",
        {**BERLIN_HOURS, "rule": "FREQ=DAILY;BYHOUR=" + "9" * 40},
        "rule",
        "BYHOUR: a number out of range",
    ),
    (
        "dateutil's own part",
        {**BERLIN_HOURS, "rule": "FREQ=YEARLY;BYEASTER=" + "9" * 40},
        "rule",
        "BYEASTER is not one of RFC 5545's parts",
    ),
    (
        "a huge weekday ordinal",
        {**BERLIN_HOURS, "rule": "FREQ=MONTHLY;BYDAY=999999MO"},
        "rule",
        "a number out of range",
    ),
    (
        "a 53rd Friday of a month",
        {**BERLIN_HOURS, "rule": "FREQ=MONTHLY;BYDAY=53FR"},
        "rule",
        "an ordinal is from 1 to 5, or -5 to -1",
    ),
    (
        "a 54th Friday of a year",
        {**BERLIN_HOURS, "rule": "FREQ=YEARLY;BYDAY=54FR"},
        "rule",
        "an ordinal is from 1 to 53",
    ),
    (
        "ended before its start",
        {**BERLIN_HOURS, "rule": "FREQ=DAILY;UNTIL=20200101"},
        "rule",
        "never opens",
    ),
    (
        "too often",
        {**BERLIN_HOURS, "rule": "FREQ=DAILY;BYHOUR=1,2,3,4,5,6,7,8,9,10"},
        "rule",
        "times a year",
    ),
    ("no duration", {"kind": "allow", "rule": "FREQ=DAILY"}, "duration", "needs one"),
    ("zero duration", {**BERLIN_HOURS, "duration": "0s"}, "duration", "1 minute to 31 days"),
    ("long duration", {**BERLIN_HOURS, "duration": "32d"}, "duration", "1 minute to 31 days"),
    (
        "start with an offset",
        {**BERLIN_HOURS, "start": "2026-01-01T00:00:00+01:00"},
        "start",
        "without an offset",
    ),
    ("start in 1900", {**BERLIN_HOURS, "start": "1900-01-01T00:00:00"}, "start", "2000 and 2100"),
    ("rule and from", {**BERLIN_HOURS, "from": "2026-01-01T00:00:00"}, "", "not both"),
    ("nothing", {"kind": "allow"}, "", "rule and a duration, or from and to"),
    (
        "to before from",
        {"kind": "deny", "from": "2026-01-02T00:00:00", "to": "2026-01-01T00:00:00"},
        "to",
        "after from",
    ),
    (
        "a year-long one-off",
        {"kind": "deny", "from": "2026-01-01T00:00:00", "to": "2027-06-01T00:00:00"},
        "to",
        "366 days",
    ),
    (
        "a one-off at year 9999, past UTC's range once shifted",
        {"kind": "deny", "from": "9999-12-31T23:00:00+14:00", "to": "9999-12-31T23:59:59-12:00"},
        "from",
        "2000 and 2100",
    ),
    (
        "a one-off at year 1 in a zone east of UTC",
        {"kind": "allow", "from": "0001-01-01T00:00:00", "to": "0001-01-01T10:00:00"}
        | {"timezone": "Asia/Tokyo"},
        "from",
        "2000 and 2100",
    ),
    (
        "a one-off from 1999",
        {"kind": "deny", "from": "1999-12-31T00:00:00", "to": "2000-01-02T00:00:00"},
        "from",
        "2000 and 2100",
    ),
    ("unknown field", {**BERLIN_HOURS, "exdate": "x"}, "exdate", "Extra inputs"),
    ("bad kind", {**BERLIN_HOURS, "kind": "maybe"}, "kind", "allow"),
]


@pytest.mark.parametrize(
    ("spec", "field", "words"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_bad_windows_are_refused_with_the_field_named(
    spec: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Window.model_validate(spec)
    errors = caught.value.errors()
    message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
    assert words in message
    assert any(field in e["loc"] or e["msg"].startswith(f"Value error, {field}") for e in errors), (
        message
    )


def test_an_allow_window_always_inside_a_freeze_is_refused() -> None:
    allow = daily_at(10, 0, "Europe/Berlin", "1h")
    deny = daily_at(9, 0, "Europe/Berlin", "3h", "deny")
    with pytest.raises(ValidationError, match=r"windows\.0: every opening"):
        windows(allow, deny)
    # Partly covered is fine: 11:00-11:30 stays open.
    windows({**allow, "duration": "2h30m"}, deny)


def test_at_most_sixteen_windows() -> None:
    with pytest.raises(ValidationError, match="at most 16"):
        windows(*[BERLIN_HOURS] * 17)


def test_a_wide_search_stays_bounded() -> None:
    """A window that opens once in four years is found without walking every day."""
    leap = windows(LEAP_DAY)
    opening = next_opening(leap, utc(2028, 3, 1))
    assert opening == utc(2032, 2, 28, 23)
    assert opening - utc(2028, 3, 1) > timedelta(days=1400)


# (what, window in a plan, where the plan's error points)
REFUSED_IN_A_PLAN: list[tuple[str, dict[str, Any], str]] = [
    (
        "a rule that never fires",
        {**BERLIN_HOURS, "rule": "FREQ=YEARLY;BYMONTH=4;BYMONTHDAY=31"},
        r"windows\.0: Value error, rule: never opens",
    ),
    (
        "an unknown time zone",
        {**BERLIN_HOURS, "timezone": "America/Gotham"},
        r"windows\.0\.timezone: Value error, unknown time zone",
    ),
    (
        "a malformed rule",
        {**BERLIN_HOURS, "rule": "FREQ=WEEKLY;;BYDAY=MO"},
        r"windows\.0\.rule: Value error, malformed",
    ),
]


@pytest.mark.parametrize(
    ("spec", "where"), [c[1:] for c in REFUSED_IN_A_PLAN], ids=[c[0] for c in REFUSED_IN_A_PLAN]
)
def test_a_plan_with_a_bad_window_is_refused_naming_the_field(
    spec: dict[str, Any], where: str
) -> None:
    stages = [{"percent": 5}, {"percent": 100}]
    with pytest.raises(ConfigError, match=where):
        parse_plan({"stages": stages, "windows": [BERLIN_HOURS, spec][1:]})


ODD_VALUES = (
    *("0", "-1", "1", "366", "-366", "9999", "99999", "9" * 30, "", ",", "1,,2", "+", "-"),
    *("MO", "MO,TU", "+1MO", "-5SU", "5FR", "6TH", "53FR", "-53SU", "0MO", "X"),
    *("20261231", "20261231T170000", "99991231", "00010101"),
)


def test_a_rule_of_any_parts_and_values_is_read_or_refused_never_raised() -> None:
    # dateutil raised IndexError for `FREQ=MONTHLY;BYDAY=53FR` and for huge
    # numbers: a window's rule is refused with ValueError (pydantic's error)
    # or accepted, whatever its parts hold.
    rng = random.Random(7)
    parts = sorted(recurrence.RULE_PARTS - {"FREQ"})
    for _ in range(800):
        body = "FREQ=" + rng.choice(sorted(recurrence.FREQUENCIES))
        for _ in range(rng.randint(1, 4)):
            body += f";{rng.choice(parts)}={rng.choice(ODD_VALUES)}"
        with contextlib.suppress(ValueError, recurrence.TooCostly):
            recurrence.check_rule(body, datetime(rng.randint(2000, 2099), 1, 1))  # noqa: DTZ001
