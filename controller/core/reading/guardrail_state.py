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
- ``undecided``: Δ is within the edge but the interval still reaches past it.

Only ``holds`` is good news: a guardrail that is not yet decided is never "ok".
Pure; every surface reads its own shape of a test, so the test is read through
:class:`Tested`, with any field possibly missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from controller.core.reading.wording import metric_name


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


def guardrail_state(test: Tested | None) -> GuardrailState:
    """The state of a guardrail whose test is ``test`` (None: too few events to test)."""
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


def state_text(metric: str, test: Tested | None) -> str:
    """``error rate watching (above tolerance, not yet significant)``."""
    return f"{metric_name(metric)} {guardrail_state(test).text}"


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)
