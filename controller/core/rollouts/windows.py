"""Release windows: when a rollout may move *forward*.

A plan (or a team-wide default) names allow windows and deny windows
(freezes), each a recurrence rule (RFC 5545 ``RRULE``) with a duration, or a
one-off ``from``/``to``, in an IANA time zone. At a moment:

* inside any deny window → it may not move forward (deny wins);
* else, with no allow windows → it may;
* else inside an allow window → it may, outside every one → it may not.

Only forward moves (advance, promote) are windowed; rollback, kill, abort
and pause never are. How a rule is read across DST changes is in
:mod:`controller.core.rollouts.recurrence`. Windows are checked when a plan is read: an
unknown time zone, a malformed rule, a duration out of range, a rule that
never opens within ten years, and an allow window every opening of which, in
its first :data:`COVER_HORIZON` (at most :data:`COVER_OPENINGS` openings), is
wholly inside deny windows, are refused with the field named. Pure: the clock
is an argument.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from controller.core.common import ConfigError, ReadableDuration, load_document
from controller.core.rollouts import recurrence
from controller.core.rollouts.recurrence import TooCostly

MAX_WINDOWS = 16
MAX_OPENING = timedelta(days=31)
"""The longest a recurring window stays open (a month-long freeze; longer is a one-off)."""
MAX_ONE_OFF = timedelta(days=366)
COVER_HORIZON = timedelta(days=1461)
"""Four years (a leap cycle) over which an allow window must open outside the deny windows."""
COVER_OPENINGS = 1000
NEXT_STEPS = 1000
"""Jumps :func:`next_opening` takes (deny end → allow start → …) before it gives up."""


class Window(BaseModel):
    """One allow or deny window: a recurring ``rule`` with a ``duration``, or ``from``/``to``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    kind: Literal["allow", "deny"]
    name: (
        Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.~ -]+$")] | None
    ) = None
    timezone: str = Field(default="UTC", max_length=64, description="IANA, e.g. Europe/Berlin.")
    rule: str | None = Field(
        default=None,
        max_length=recurrence.MAX_RULE_TEXT,
        description="RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0",
    )
    start: datetime | None = Field(
        default=None,
        description="The anchor (DTSTART), wall time in `timezone`; default 2024-01-01 00:00.",
    )
    duration: Annotated[timedelta, ReadableDuration] | None = Field(
        default=None, description="How long each opening lasts (elapsed time), 1m to 31d."
    )
    from_: datetime | None = Field(default=None, alias="from", description="One-off: opens.")
    to: datetime | None = Field(default=None, description="One-off: closes.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, key: str) -> str:
        recurrence.zone(key)
        return key

    @field_validator("rule")
    @classmethod
    def _readable_rule(cls, text: str | None) -> str | None:
        if text is not None:
            recurrence.parse_rule(text)
        return text

    @field_validator("start")
    @classmethod
    def _wall_start(cls, start: datetime | None) -> datetime | None:
        if start is not None and start.tzinfo is not None:
            raise ValueError("start is wall time in the window's timezone, without an offset")
        if start is not None and not recurrence.EARLIEST <= start < recurrence.LATEST:
            raise ValueError("start must lie between 2000 and 2100")
        return start

    @field_validator("from_", "to")
    @classmethod
    def _one_off_range(cls, moment: datetime | None) -> datetime | None:
        # Bounded as start is: near year 1 or 9999 the shift to UTC overflows.
        if moment is not None and not (
            recurrence.EARLIEST <= moment.replace(tzinfo=None) < recurrence.LATEST
        ):
            raise ValueError("a one-off window must lie between 2000 and 2100")
        return moment

    @field_validator("duration")
    @classmethod
    def _duration_range(cls, duration: timedelta | None) -> timedelta | None:
        if duration is not None and not timedelta(minutes=1) <= duration <= MAX_OPENING:
            raise ValueError("duration must be from 1 minute to 31 days")
        return duration

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        if self.rule is not None:
            if self.from_ is not None or self.to is not None:
                raise ValueError("a window has a rule or from/to, not both")
            if self.duration is None:
                raise ValueError("duration: a recurring window needs one")
            try:
                recurrence.check_rule(self.rule, self.anchor)
            except (ValueError, TooCostly) as exc:
                raise ValueError(f"rule: {exc}") from None
            return self
        if self.from_ is None or self.to is None:
            raise ValueError("a window needs a rule and a duration, or from and to")
        if self.duration is not None or self.start is not None:
            raise ValueError("duration and start go with a rule, not with from/to")
        opens, closes = self._one_off()
        if not timedelta(0) < closes - opens <= MAX_ONE_OFF:
            raise ValueError("to: must be after from, and at most 366 days after it")
        return self

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Written back as read: ``from``, not the attribute's ``from_``."""
        data = handler(self)
        if isinstance(data, dict) and "from_" in data:
            data["from"] = data.pop("from_")
        return data

    @property
    def anchor(self) -> datetime:
        return self.start if self.start is not None else recurrence.DEFAULT_START

    def _one_off(self) -> tuple[datetime, datetime]:
        assert self.from_ is not None  # the validator guarantees both
        assert self.to is not None
        tz = recurrence.zone(self.timezone)
        return _aware(self.from_, tz), _aware(self.to, tz)

    def opens_again(self, now: datetime) -> bool:
        """Whether it is open at ``now`` or opens after it (False: every opening is over)."""
        if self.rule is None:
            return self._one_off()[1] > now
        assert self.duration is not None  # the validator guarantees it
        rule = recurrence.compile_rule(self.rule, self.anchor)
        try:
            return recurrence.closes_after(rule, self.duration, recurrence.zone(self.timezone), now)
        except TooCostly:
            return True  # not provable here; evaluation fails closed instead

    def openings(self, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime]]:
        """Its openings ``[opens, closes)`` (aware, UTC) that overlap ``[lo, hi]``."""
        if self.rule is None:
            opens, closes = self._one_off()
            return [(opens, closes)] if closes > lo and opens <= hi else []
        assert self.duration is not None  # the validator guarantees it
        rule = recurrence.compile_rule(self.rule, self.anchor)
        tz = recurrence.zone(self.timezone)
        return list(recurrence.intervals(rule, self.duration, tz, lo, hi))


def _aware(moment: datetime, tz: ZoneInfo) -> datetime:
    return recurrence.instant(moment, tz) if moment.tzinfo is None else moment.astimezone(UTC)


def label(windows: tuple[Window, ...] | list[Window], window: Window) -> str:
    """The window's name, or its place (``windows.2``) when it has none."""
    return window.name or f"windows.{list(windows).index(window)}"


def check_windows(windows: tuple[Window, ...]) -> tuple[Window, ...]:
    """Refuse an allow window that never opens outside the deny windows (see the module)."""
    problem = _shut_allow(windows)
    if problem is not None:
        raise ValueError(problem)
    return windows


@functools.lru_cache(maxsize=256)
def _shut_allow(windows: tuple[Window, ...]) -> str | None:
    """Remembered: a stored rollout's plan is read again on every load."""
    denies = [w for w in windows if w.kind == "deny"]
    for i, window in enumerate(windows):
        if window.kind == "allow" and denies and not _ever_open(window, denies):
            return f"windows.{i}: every opening in its first four years falls inside deny windows"
    return None


def _ever_open(allow: Window, denies: list[Window]) -> bool:
    lo = _first_moment(allow)
    hi = lo + COVER_HORIZON
    try:
        spans = sorted(span for deny in denies for span in deny.openings(lo, hi + MAX_OPENING))
        for opens, closes in allow.openings(lo, hi)[:COVER_OPENINGS]:
            start = bisect.bisect_left(spans, (opens - MAX_ONE_OFF, opens))
            if _uncovered(opens, closes, spans[start:]) is not None:
                return True
    except TooCostly:
        return True  # not provable here; evaluation fails closed instead
    return False


def _first_moment(window: Window) -> datetime:
    if window.rule is None:
        return window._one_off()[0]
    return recurrence.instant(window.anchor, recurrence.zone(window.timezone))


def _uncovered(
    opens: datetime, closes: datetime, spans: list[tuple[datetime, datetime]]
) -> datetime | None:
    """The first moment of ``[opens, closes)`` in none of ``spans`` (sorted), or None."""
    moment = opens
    for deny_opens, deny_closes in spans:
        if deny_opens > moment:
            break
        moment = max(moment, deny_closes)
        if moment >= closes:
            return None
    return moment if moment < closes else None


Windows = Annotated[
    tuple[Window, ...], Field(max_length=MAX_WINDOWS), AfterValidator(check_windows)
]
"""A plan's or the team's windows: at most 16, checked together."""


class TeamWindows(BaseModel):
    """The team's release windows (``engine.windows_file``): every plan that names none
    takes them. The file holds ``windows:`` and a list, as a plan does."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    windows: Windows = ()


def read_team_windows(text: str, *, source: str, name: str = "") -> tuple[Window, ...]:
    """The windows in a team's windows file; :class:`ConfigError` names the field
    (``windows.0.timezone: unknown time zone``) and ``source``; JSON where the file
    ``name`` ends in ``.json``."""
    data = load_document(text, source=source, name=name)
    try:
        return TeamWindows.model_validate(data if data is not None else {}).windows
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid {source}: {problems}") from exc


@dataclass(frozen=True, slots=True)
class WindowVerdict:
    """Whether a rollout may move forward now, and why (for the decision's evidence)."""

    allowed: bool
    reason: str
    window: str | None = None
    """The window that decided, by name or place (``windows.0``)."""


def may_move_forward(windows: tuple[Window, ...], now: datetime) -> WindowVerdict:
    """Deny wins; no allow windows means always allowed. Fails closed if too costly."""
    try:
        return _verdict(windows, now)
    except TooCostly as exc:
        return WindowVerdict(False, f"the windows cannot be evaluated: {exc}")


def _verdict(windows: tuple[Window, ...], now: datetime) -> WindowVerdict:
    for window in windows:
        closing = _closes_at(window, now) if window.kind == "deny" else []
        if closing:
            until = _local(max(closing), window.timezone, now)
            name = label(windows, window)
            return WindowVerdict(False, f"inside deny window {name} until {until}", name)
    allows = [w for w in windows if w.kind == "allow"]
    if not allows:
        why = "no allow windows" if windows else "no windows"
        return WindowVerdict(True, f"{why}: moving forward is allowed at any time")
    for window in allows:
        if window.openings(now, now):
            name = label(windows, window)
            return WindowVerdict(True, f"inside allow window {name}", name)
    return WindowVerdict(False, "outside every allow window")


def next_opening(windows: tuple[Window, ...], now: datetime) -> datetime | None:
    """The first moment from ``now`` at which a forward move is allowed (None: not within
    ten years, or not computable)."""
    found = _next(windows, now)
    return found[0] if found is not None else None


def _next(windows: tuple[Window, ...], now: datetime) -> tuple[datetime, Window | None] | None:
    """The moment, and the window that opens then (None when a deny window closing opens it)."""
    moment, by = now, None
    limit = now + recurrence.HORIZON
    try:
        for _ in range(NEXT_STEPS):
            verdict = _verdict(windows, moment)
            if verdict.allowed:
                return moment, by
            later = _after(windows, moment)
            if later is None or later[0] > limit:
                return None
            moment, by = later
    except TooCostly:
        return None
    return None


def _after(windows: tuple[Window, ...], moment: datetime) -> tuple[datetime, Window] | None:
    """Where to look next: past the deny windows open now, else the next allow opening."""
    open_denies = [
        (closes, w) for w in windows if w.kind == "deny" for closes in _closes_at(w, moment)
    ]
    if open_denies:
        return max(open_denies, key=lambda found: found[0])
    return _next_allow(windows, moment)


def _closes_at(window: Window, moment: datetime) -> list[datetime]:
    """When the window's openings that hold ``moment`` close (none: it is shut then)."""
    return [closes for _, closes in window.openings(moment, moment)]


def _next_allow(windows: tuple[Window, ...], moment: datetime) -> tuple[datetime, Window] | None:
    best: tuple[datetime, Window] | None = None
    for window in windows:
        if window.kind != "allow":
            continue
        step, hi = timedelta(days=8), moment + recurrence.HORIZON
        lo = moment
        while lo < hi:  # widen the search so a weekly rule is not walked ten years out
            starts = [o for o, _ in window.openings(lo, lo + step) if o > moment]
            if starts:
                if best is None or min(starts) < best[0]:
                    best = (min(starts), window)
                break
            lo, step = lo + step, step * 4
    return best


def never_opens(windows: tuple[Window, ...], moment: datetime) -> str | None:
    """Why no forward move is ever allowed from ``moment`` on, taking every window
    together (every allow window over, or each of its openings left inside a freeze);
    None when one is, or when there are no windows. A rollout started under such
    windows would wait at its first stage forever."""
    if not windows or next_opening(windows, moment) is not None:
        return None
    return (
        f"no window opens from {moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC on (none within"
        " ten years): every allow window is over or falls inside a freeze, so a rollout"
        " would wait at its first stage forever"
    )


def waiting_reason(windows: tuple[Window, ...], now: datetime) -> str:
    """``ready, waiting for the window that opens Mon 09:00 Europe/Berlin``, or why not."""
    found = _next(windows, now)
    if found is None:
        return "ready, but no window opens within ten years"
    moment, by = found
    if moment <= now:
        return "ready, and a window is open"
    zone_key = by.timezone if by is not None else "UTC"
    return f"ready, waiting for the window that opens {_local(moment, zone_key, now)}"


def _local(moment: datetime, zone_key: str, now: datetime | None = None) -> str:
    """``Mon 09:00 Europe/Berlin``; with the date when it is a week or more away."""
    local = moment.astimezone(recurrence.zone(zone_key))
    near = now is not None and moment - now < timedelta(days=6)
    shape = "%a %H:%M" if near else "%a %d %b %Y %H:%M"
    return f"{local.strftime(shape)} {zone_key}"
