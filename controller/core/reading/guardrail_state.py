"""A guardrail's state in words: one wording for the list, the page, ``status``, reports, alerts.

The gate's test of a guardrail (:mod:`controller.core.stats.sequential`) is in
exactly one of these states, judged from its Δ, its always-valid interval and
the tolerance's edge (``+tolerance`` when lower is better, ``-tolerance`` when
higher is better):

- ``regressed``: the interval lies wholly beyond the edge (the gate acts);
- ``watching``: Δ is past the edge but the interval still reaches back over it;
- ``not yet tested``: too few events in an arm, no estimate, or an unbounded
  interval: nothing can be said yet;
- ``holds``: the interval excludes harm beyond the edge;
- ``undecided``: Δ is within the edge but the interval still reaches past it;
- ``no comparison``: the stage has no concurrent control (a stage at 100%, a ring with
  none), so no guardrail compares arms, whatever late units of the other arm a test
  still counts; the stage is gated on its limits.

Only ``holds`` is good news: a guardrail that is not yet decided is never "ok".

A limit of a stage with no concurrent control (:mod:`controller.core.stats.limits`) is
read the same way, its rate against the limit as the edge: ``breached``, ``above it, not
yet shown above``, ``shown under it`` (its upper bound at or below the limit: only then
is it *shown* kept) or ``not shown above, nor yet under``, with what its size could catch
(:func:`comparison_text`).

Pure; every surface reads its own shape of a test, so the test is read through
:class:`Tested`, with any field possibly missing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from controller.core.reading.intervals import decimals_for, rounded_interval
from controller.core.reading.wording import metric_name
from controller.core.stats import NO_CONTROL, QUANTILE_SHARES
from controller.core.wire import GateEvidence, LimitTest, RolloutEvidence, tolerant


class Tested(Protocol):
    """What the state is judged from: a served test, a history point or a report's row."""

    @property
    def delta(self) -> float | None: ...
    @property
    def lower(self) -> float | None: ...
    @property
    def upper(self) -> float | None: ...
    @property
    def tolerance(self) -> float | None: ...
    @property
    def direction(self) -> str | None: ...
    @property
    def regressed(self) -> bool: ...


class State(StrEnum):
    """A guardrail's state, as every surface names it."""

    REGRESSED = "regressed"
    WATCHING = "watching"
    UNTESTED = "not yet tested"
    UNDECIDED = "undecided"
    HOLDS = "holds"
    NOT_COMPARED = "no comparison"


@dataclass(frozen=True, slots=True)
class GuardrailState:
    """A guardrail's state and why it is in it."""

    state: State
    why: str

    @property
    def text(self) -> str:
        """``watching (above tolerance, not yet significant)``."""
        return f"{self.state} ({self.why})"

    @property
    def decided(self) -> bool:
        """Whether the interval has settled it: regressed, or harm excluded."""
        return self.state in (State.REGRESSED, State.HOLDS)


def guardrail_state(test: Tested | None, *, compared: bool = True) -> GuardrailState:
    """The state of a guardrail whose test is ``test`` (None: too few events to test);
    ``compared``: the stage has a concurrent control (:func:`compares`)."""
    if not compared:
        return GuardrailState(State.NOT_COMPARED, "no concurrent control: gated on its limits")
    if test is None:
        return GuardrailState(State.UNTESTED, "too few events")
    side = "below" if test.direction == "higher_is_better" else "above"
    if test.regressed:
        return GuardrailState(State.REGRESSED, f"interval wholly {side} tolerance")
    delta, tolerance = _number(test.delta), _number(test.tolerance)
    if not math.isfinite(delta):
        return GuardrailState(State.UNTESTED, "no estimate yet")
    if not math.isfinite(tolerance):
        return GuardrailState(State.UNDECIDED, "its tolerance not known")
    return _against(test, side, delta, abs(tolerance))


def _against(test: Tested, side: str, delta: float, tolerance: float) -> GuardrailState:
    """The state of a test with an estimate, judged against its tolerance on ``side``."""
    # Seen from the harmful side, harm is a value above the edge either way.
    sign = 1.0 if side == "above" else -1.0
    near = _number(test.upper if side == "above" else test.lower) * sign
    if delta * sign > tolerance:
        return GuardrailState(State.WATCHING, f"{side} tolerance, not yet significant")
    if not math.isfinite(near):
        return GuardrailState(State.UNTESTED, "interval not yet bounded")
    if near <= tolerance:
        return GuardrailState(State.HOLDS, f"harm {side} tolerance excluded")
    return GuardrailState(State.UNDECIDED, f"within tolerance so far, harm {side} not excluded")


def state_text(metric: str, test: Tested | None, *, compared: bool = True) -> str:
    """``error rate watching (above tolerance, not yet significant)``."""
    return f"{metric_name(metric)} {guardrail_state(test, compared=compared).text}"


def standing_text(tests: Mapping[str, Tested | None]) -> str:
    """How the guardrails stood when their stage advanced, grouped by state, those that
    hold first: only ``holds`` excludes harm, so every other state is said to advance with
    harm not excluded: ``held, harm excluded: error_rate; advanced undecided, harm not
    excluded: latency_p99``."""
    grouped: dict[State, list[str]] = {}
    for key, test in tests.items():
        grouped.setdefault(guardrail_state(test).state, []).append(key)
    return "; ".join(
        f"held, harm excluded: {', '.join(keys)}"
        if state is State.HOLDS
        else f"advanced {state}, harm not excluded: {', '.join(keys)}"
        for state, keys in sorted(grouped.items(), key=lambda group: group[0] is not State.HOLDS)
    )


def completed_text(tests: Mapping[str, Tested | None]) -> str:
    """A complete stage's advance in words: "guardrails hold" only when every gating
    guardrail excludes harm; else which held and which advanced with harm not excluded."""
    if not tests:
        return "the stage is complete (no gating guardrail)"
    said = f"the stage is complete ({standing_text(tests)})"
    return f"guardrails hold and {said}" if all_hold(tests) else said


def all_hold(tests: Mapping[str, Tested | None]) -> bool:
    """Whether every one of ``tests`` holds (harm excluded); False for none."""
    return bool(tests) and all(guardrail_state(t).state is State.HOLDS for t in tests.values())


def compares(comparison: str | None) -> bool:
    """Whether an evidence whose ``comparison`` reads so compared the arms (a stage without
    a concurrent control records :data:`~controller.core.stats.NO_CONTROL`)."""
    return comparison != NO_CONTROL


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


LIMIT_WORDS = {
    State.REGRESSED: "breached",
    State.WATCHING: "above it, not yet shown above",
    State.HOLDS: "shown under it",
    State.UNDECIDED: "not shown above, nor yet under",
    State.UNTESTED: "not yet tested",
}
"""A limit's state in words, by the state its test is in."""


def comparison_text(evidence: GateEvidence, *, at: str = "") -> str:
    """A gate's evidence without a control in words, or "" for a comparison of two arms.

    ``none (no concurrent control): gated on absolute limits: error_rate: 1.4% [0, 2.9%]
    against its limit 5%, not shown above, nor yet under (864 requests: only an error rate
    above 9.5% would be caught)``; what the console, ``rolloutctl status`` and the report
    show. ``at`` names the stage the evidence is of, where it is not the one now.
    """
    if evidence.comparison != NO_CONTROL:
        return ""
    parts = [limit_reading(name, entry) for name, entry in (evidence.limits or {}).items()]
    where, said = f" at {at}" if at else "", "; ".join(parts) or "none declared"
    return f"{NO_CONTROL}: gated on absolute limits{where}: {said}"


def _gate_read(raw: object) -> GateEvidence:
    return tolerant(GateEvidence, raw, partial=True)


class LimitsGated(BaseModel):
    """A completed rollout's pass of the last stage its limits gated (no concurrent control)
    for a minimum time of its own: the stage, and the gate's evidence there."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    at: str = Field(max_length=200, description='The stage in words: "stage 1/2 (100%)".')
    evidence: Annotated[GateEvidence, BeforeValidator(_gate_read)] = Field(
        description="The gate's evidence at its pass: its limits, as a decision carries them."
    )

    @classmethod
    def of(cls, passed: RolloutEvidence) -> LimitsGated:
        """The pass as its decision's evidence kept it (``at_stage`` names the stage)."""
        at = passed.at_stage
        said = (at.label or f"stage {at.index + 1}") if at is not None else "an earlier stage"
        return cls(at=said, evidence=passed.gate())


def limits_said(evidence: GateEvidence, gated: LimitsGated | None) -> tuple[GateEvidence, str]:
    """The evidence a rollout's limits are said from, and the stage it names ("" for
    ``evidence`` itself, the gate now or the decision that ended it): ``gated``, a completed
    rollout's pass of the last stage its limits gated for a minimum time of its own, where
    it kept one. A ring that completed through a closing step of a second is said by the
    ring its limits gated, not by that second's few requests."""
    if gated is None or not gated.evidence.limits or gated.evidence.comparison != NO_CONTROL:
        return evidence, ""
    return gated.evidence, gated.at


def limits_comparison(evidence: GateEvidence, gated: LimitsGated | None) -> str:
    """:func:`comparison_text` of the evidence the limits are said from
    (:func:`limits_said`), naming its stage where it is not ``evidence``'s."""
    said, at = limits_said(evidence, gated)
    return comparison_text(said, at=at)


def limit_reading(name: str, entry: LimitTest) -> str:
    """One limit: its rate and interval against what it allows, its state, and, until it is
    shown either way, what its size could catch."""
    said = limit_state_text(name, entry.test, entry.limit)
    caught = caught_text(name, entry)
    return f"{said} ({caught})" if caught and not guardrail_state(entry.test).decided else said


@dataclass(frozen=True, slots=True)
class LimitRead:
    """A limit's recorded test read as a test (:class:`Tested`): its rate as Δ, what the
    limit allows as the tolerance, a higher rate worse."""

    delta: float
    lower: float | None
    upper: float | None
    tolerance: float
    regressed: bool
    direction: str = "lower_is_better"


def limit_state_text(name: str, test: Tested, limit: float) -> str:
    """``error_rate: 1.4% [0, 2.9%] against its limit 5%, not shown above, nor yet under``:
    a limit's test (its rate as Δ, what it allows as the tolerance) and the plan's
    ``limit`` as declared, in the words of its state; what the gate's evidence, the
    console's list and page say of a limit."""
    state = guardrail_state(test).state
    return f"{name[:32]}: {limit_interval(name, test, limit)}, {LIMIT_WORDS[state]}"


def limit_interval(name: str, test: Tested, limit: float) -> str:
    """``1.4% [0, 2.9%] against its limit 5%``; a latency limit's rate is a share of requests
    slower than it: ``3.1% [1.0%, 5.2%] of requests slower than 200 ms, at most 5%``. The
    interval keeps its side of the limit (:func:`rounded_interval`)."""
    values = (_number(v) for v in (test.delta, test.lower, test.upper, test.tolerance))
    interval, edge = rate_interval(*values)
    if name in QUANTILE_SHARES:
        return f"{interval} of requests slower than {limit:g} ms, at most {edge}"
    return f"{interval} against its limit {edge}"


def rate_interval(rate: float, lower: float, upper: float, ceiling: float) -> tuple[str, str]:
    """A rate and its interval in percent, each on its side of ``ceiling``
    (:func:`rounded_interval`), and the ceiling at the same rounding: ``("1.4% [0, 7.2%]",
    "5.0%")``. A bound below 0 reads 0; an unbounded upper bound, ``unbounded``."""
    shown = rounded_interval(rate * 100, max(lower, 0.0) * 100, upper * 100, ceiling * 100)
    low, high, edge = (_percent(text) for text in (shown.lower, shown.upper, shown.limit))
    return f"{_percent(shown.delta)} [{low}, {high or 'unbounded'}]", edge


def caught_text(name: str, entry: LimitTest) -> str:
    """``864 requests: only an error rate above 9.5% would be caught``: what the limit's
    test catches with 80% power at its size so far; "" without the figure."""
    n, rate = entry.test.n, entry.detectable
    if not isinstance(n, int) or n < 0:
        return ""  # a damaged or older record: no figure
    counted = f"{n:,} request{'' if n == 1 else 's'}"
    if n and rate is None:
        return f"{counted}: no rate would be caught yet"
    if rate is None or not math.isfinite(rate):
        return ""
    percent = rate * 100
    shown = f"{percent:.{decimals_for(percent)}f}%"
    if name in QUANTILE_SHARES:
        what = f"a share above {shown} of requests slower than {entry.limit:g} ms"
    else:
        what = f"an error rate above {shown}"
    return f"{counted}: only {what} would be caught"


def _percent(text: str) -> str:
    """A written value in percent (``+1.4``) as a share is written (``1.4%``); ``0`` bare."""
    bare = text.lstrip("+")
    return bare if bare in ("0", "", "-") else f"{bare}%"
