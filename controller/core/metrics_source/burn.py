"""What a plan writes to wait on its service's error budget: the burn rate, in tiers.

A :class:`BurnRate` (``burn_rate``) is the service's error-budget burn rate, one number
per window (``{{window}}`` is each window in turn). Its windows come in tiers joined by
OR; a tier *burns* when the burn rate is above its threshold over each of its windows
(AND), and forward moves wait while any tier burns (docs/prometheus.md). This is the
multiwindow, multi-burn-rate alert of Beyer et al., *The Site Reliability Workbook*
(O'Reilly 2018), ch. 5 "Alerting on SLOs": a fast burn is caught within the hour and a
slow one within days, the long window says the budget is really being spent and the short
one that it still is, so the condition ends soon after the burn does.

A plan writes it one of three ways:

* ``tiers``: each a threshold over a ``long`` and a ``short`` window; ``short`` left out
  is 1/12 of ``long`` in whole seconds (:func:`default_short`, the workbook's ratio);
* ``above`` and ``windows``: one tier over every window, the form plans wrote first;
* neither: the workbook's three tiers (:data:`WORKBOOK_TIERS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from controller.core.common import ReadableDuration
from controller.core.metrics_source.queries import QueryText
from controller.core.metrics_source.templates import parse_template

MIN_BURN_WINDOW = timedelta(seconds=10)
MAX_BURN_WINDOW = timedelta(days=30)
"""A burn-rate window spans at most an SLO period; one too short for the scrape interval
answers no series, which holds forward moves (it is never read as healthy)."""
MAX_BURN_RATE = 1e6
MAX_TIERS = 4
"""At most 8 windows, each a query every reading: the workbook needs 3 tiers."""
MAX_WINDOWS = 4
"""The windows of the one-tier form (``above`` and ``windows``)."""
SHORT_OF_LONG = 12
"""A tier's short window left out is its long window over this (1 h: 5 min)."""

BurnWindow = Annotated[timedelta, ReadableDuration, Field(ge=MIN_BURN_WINDOW, le=MAX_BURN_WINDOW)]
Threshold = Annotated[float, Field(gt=0, le=MAX_BURN_RATE, allow_inf_nan=False)]


def _reads_each_window(text: str) -> str:
    names = parse_template(text).names  # a QueryText: it parses
    if "window" not in names:
        raise ValueError("the burn-rate query reads each window through {{window}}")
    if "arm" in names:
        raise ValueError("the burn rate is the service's, not an arm's: no {{arm}} in it")
    return text


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True, slots=True)
class Tier:
    """One tier as the gate reads it: it burns when the burn rate is above ``above`` over
    every one of ``windows``."""

    above: float
    windows: tuple[timedelta, ...]

    def names(self) -> tuple[str, ...]:
        """Its windows by their short names, in its order."""
        return tuple(window_name(w) for w in self.windows)


def default_short(long: timedelta) -> timedelta:
    """A tier's short window when the plan gives none: 1/12 of ``long`` in whole seconds
    (queries ask whole seconds), the workbook's ratio: 1h gives 5m, 6h 30m, 3d 6h."""
    return timedelta(seconds=int(long.total_seconds()) // SHORT_OF_LONG)


class BurnTier(_Part):
    """A threshold over a long window and a short one: the tier burns over both."""

    above: Threshold = Field(description="The burn rate that holds over both windows.")
    long: BurnWindow = Field(description="The long window: the budget is being spent.")
    short: BurnWindow | None = Field(
        default=None,
        description="The short window: it still is. Left out: 1/12 of long, in whole"
        " seconds (1h: 5m).",
    )

    @model_validator(mode="after")
    def _short_below_long(self) -> Self:
        short = self.short_window
        if self.short is None and short < MIN_BURN_WINDOW:
            raise ValueError(
                f"short left out is 1/12 of long, {window_name(short)}, under the"
                f" {window_name(MIN_BURN_WINDOW)} a window needs: give short"
            )
        if short >= self.long:
            raise ValueError("short must be shorter than long")
        return self

    @property
    def short_window(self) -> timedelta:
        """The short window given, else 1/12 of the long one."""
        return self.short if self.short is not None else default_short(self.long)

    def tier(self) -> Tier:
        return Tier(self.above, (self.long, self.short_window))


WORKBOOK_TIERS = (
    BurnTier(above=14.4, long=timedelta(hours=1), short=timedelta(minutes=5)),
    BurnTier(above=6, long=timedelta(hours=6), short=timedelta(minutes=30)),
    BurnTier(above=1, long=timedelta(days=3), short=timedelta(hours=6)),
)
"""The workbook's tiers for a 30-day SLO: 2% of the budget spent in an hour, 5% in six
hours, 10% in three days."""


class BurnRate(_Part):
    """The SLO's burn-rate condition: while any tier burns, forward moves wait.

    ``tiers: [{above: 14.4, long: 1h}]`` holds while the budget burns 14.4 times as fast
    as it may over the last hour and the last 5 minutes; ``above: 14.4, windows: [5m, 1h]``
    says the same as one tier; with neither, the workbook's three tiers.
    """

    query: Annotated[QueryText, AfterValidator(_reads_each_window)] = Field(
        description="The burn rate over {{window}}, one number: the error ratio over the"
        " window divided by the SLO's allowed ratio (1 - objective)."
    )
    tiers: Annotated[list[BurnTier], Field(min_length=1, max_length=MAX_TIERS)] | None = Field(
        default=None,
        description="Joined by OR: forward moves wait while the burn rate is above a"
        " tier's threshold over both its windows. Left out with above and windows: the"
        " SRE workbook's three (14.4 over 1h and 5m, 6 over 6h and 30m, 1 over 3d and 6h).",
    )
    above: Threshold | None = Field(
        default=None, description="With windows, one tier: the burn rate that holds."
    )
    windows: Annotated[list[BurnWindow], Field(min_length=1, max_length=MAX_WINDOWS)] | None = (
        Field(default=None, description="With above, one tier: it holds over every window.")
    )

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if self.tiers is not None and (self.above is not None or self.windows is not None):
            raise ValueError("write tiers, or above and windows (one tier), not both")
        if (self.above is None) != (self.windows is None):
            raise ValueError("above and windows go together (one tier over every window)")
        if self.windows is not None and len(set(self.windows)) != len(self.windows):
            raise ValueError("burn-rate windows must differ")
        tiers = self.tier_list()
        if len(set(tiers)) != len(tiers):
            raise ValueError("burn-rate tiers must differ")
        return self

    def tier_list(self) -> tuple[Tier, ...]:
        """The tiers the gate reads, in the plan's order (the one-tier form's windows
        shortest first)."""
        if self.above is not None and self.windows is not None:
            return (Tier(self.above, tuple(sorted(self.windows))),)
        return tuple(t.tier() for t in self.tiers or WORKBOOK_TIERS)

    def named_windows(self) -> dict[str, timedelta]:
        """Each window of every tier once, by its short name (``5m``, ``1h``, ``90s``),
        shortest first: each is read once, whichever tiers share it."""
        every = {w for tier in self.tier_list() for w in tier.windows}
        return {window_name(w): w for w in sorted(every)}


def window_name(window: timedelta) -> str:
    """``5m`` for five minutes, ``1h`` for an hour, ``1d`` for a day; else whole seconds."""
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
