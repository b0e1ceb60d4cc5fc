"""What the running stage can catch, and what it still needs, in words: for
``rolloutctl status``, the console and the MCP server.

From each guardrail's own test in the stage's evidence and the time the stage has run,
:func:`running_lines` says the smallest regression the stage detects with 80% power by
the end of its minimum at its current traffic, and how much longer it needs to detect a
regression of a given size (:mod:`controller.core.stats.power`, *a running stage*).

:func:`stage_needs` sums up what a stage the gate holds still waits for, all of it at
once where the gate's reason names only the first: the time left to its minimum, units
per arm against its minimum, partitions not yet counted, gating guardrails not yet
tested, a ring that has seen no unit at all, and how long its traffic needs to detect
a +50% regression (:data:`DEFAULT_EFFECT`: a plan names no effect of its own).

:func:`limit_stage_lines` says, for ``plan validate --traffic``, what each stage without
control catches of its limits by its minimum and how long showing them under takes
(:func:`controller.core.stats.limits.limit_preview`).

Pure. The evidence may come from an older controller: a test without its variance, N,
level or ``n_tune`` has no figure, and says nothing.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from controller.core.common import countdown_text
from controller.core.reading.intervals import decimals_for
from controller.core.reading.wording import metric_name
from controller.core.rollouts import (
    COUNT_METRICS,
    Phase,
    Plan,
    Rollout,
    Verdict,
    VerdictKind,
    conversion_of,
    metric_of,
)
from controller.core.stats import (
    POWER,
    QUANTILE_SHARES,
    LimitFigure,
    LimitStagePreview,
    Observed,
    Traffic,
    limit_preview,
    observed_detectable,
    observed_seconds_to_detect,
    share_text,
)
from controller.core.wire import ArmTally, AudienceRing, GateEvidence
from controller.core.wire import GuardrailTest as WireTest

if TYPE_CHECKING:  # the views serve a stage's needs, so they import this module
    from controller.core.reading.views import RolloutView

DEFAULT_EFFECT = 0.5
"""The regression the running stage's remaining time is given for: +50% (or -50%)."""


def span_text(seconds: float) -> str:
    """``45 s``, ``30 min``, ``2 h 30 min``, ``3.5 d``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{seconds / 86_400:.1f} d"


def running_lines(status: RolloutView, effect: float = DEFAULT_EFFECT) -> list[str]:
    """Per guardrail of the running stage with a figure: ``error rate: `` and
    :func:`running_text`."""
    found = ((key, running_text(status, key, effect)) for key, _ in _tests(status.evidence))
    return [f"{metric_name(key)}: {said}" for key, said in found if said]


def running_text(status: RolloutView, key: str, effect: float = DEFAULT_EFFECT) -> str:
    """What the running stage detects of guardrail ``key`` by the end of its minimum at its
    current traffic, and how much longer it needs for a regression of ``effect``; '' while
    there is no figure (not gated, no test yet, or a test without its numbers)."""
    test = dict(_tests(status.evidence)).get(key)
    if test is None or status.verdict is None or status.time_in_stage_s <= 0:
        return ""
    evidence = status.evidence
    base = _base(key, evidence, _control_rate(key, (evidence.arms or {}).get("control")))
    observed = _observed(test, status.time_in_stage_s, _final_share(evidence))
    end = max(status.min_duration_s, status.time_in_stage_s)
    at_end = None if observed is None else observed_detectable(observed, end, base)
    if observed is None or at_end is None:
        return ""
    sign = "+" if test.direction == "lower_is_better" else "-"
    more = observed_seconds_to_detect(observed, base, effect)
    when = "now" if more == 0 else f"in {span_text(more)} more" if more else "in over 30 days"
    return (
        f"detectable from {sign}{share_text(at_end)} by the stage's minimum"
        f" ({POWER:.0%} power); {sign}{share_text(effect)} {when}"
    )


def _final_share(evidence: GateEvidence) -> float | None:
    """The share of each test's level its stage's final look spends, where it has one."""
    share = evidence.alpha.final_look if evidence.alpha is not None else None
    return share if isinstance(share, int | float) and 0 < share < 1 else None


def _observed(test: WireTest, elapsed_s: float, share: float | None = None) -> Observed | None:
    """The test's figures, when it has them all (one from an older gate may not); with a
    final look (``share``), a test on units has the rest of its level there."""
    fields = (test.variance, test.n, test.tolerance, test.alpha, test.n_tune)
    if any(not isinstance(x, int | float) for x in fields):
        return None
    final = None
    if share is not None and test.unit_of_analysis == "unit":
        final = test.alpha * share / (1.0 - share)
    try:
        return Observed(test.variance, int(test.n), test.tolerance, test.alpha,
                        int(test.n_tune), elapsed_s, final)  # fmt: skip
    except (TypeError, ValueError):
        return None


def _control_rate(key: str, control: ArmTally | None) -> float | None:
    """The control's error rate, conversion rate (of the conversion a key names), or crashes
    or exceptions per exposure (None while it has none: a relative figure needs a base)."""
    if control is None:
        return None
    metric, name = metric_of(key), conversion_of(key)
    if metric in COUNT_METRICS and control.exposures:
        count = control.crashes if metric == "crash_count" else control.exceptions
        return count / control.exposures if count else None
    if metric == "error_rate" and control.requests:
        return control.errors / control.requests
    if metric == "conversion_rate" and control.exposures:
        hits = (control.named_conversions or {}).get(name, 0) if name else control.conversions
        return min(hits, control.exposures) / control.exposures
    return None


def _base(key: str, evidence: GateEvidence, rate: float | None) -> float | None:
    """What a relative figure is taken against: the control's rate, or its quantile."""
    if rate is not None:
        return rate
    latency = (evidence.latency or {}).get("control")
    if latency is not None and key in ("latency_p95", "latency_p99"):
        return latency.p95 if key == "latency_p95" else latency.p99
    return None


def _tests(evidence: GateEvidence) -> list[tuple[str, WireTest]]:
    tests = evidence.guardrails or {}
    return [(key, test) for key, test in tests.items() if isinstance(test, WireTest)]


# --- what a waiting stage still needs ---------------------------------------------------

NO_UNITS_AFTER = timedelta(minutes=1)
"""A targeted stage served this long without a unit in either arm is not slow to start: its
ring matches no unit the apps report (their SDK loads no segments, or sends no attribute
the ring's rule reads), while its sample-ratio check has nothing to find wrong."""


class _Need(BaseModel):
    # A client reads a newer controller's answer: fields it does not know are ignored.
    model_config = ConfigDict(frozen=True, extra="ignore")


class UnitsNeeded(_Need):
    """Units per arm against the stage's ``min_units_per_arm``."""

    needed: int = Field(description="The stage's min_units_per_arm.")
    fewest: int = Field(
        description="Units in the arm the gate counts: the smaller, or treatment alone in a"
        " stage with no concurrent control."
    )
    treatment: int
    control: int | None = Field(description="Null in a stage with no concurrent control.")

    def text(self) -> str:
        """``units per arm: 153 of 300 (treatment 153, control 171)``."""
        if self.control is None:
            return f"units in treatment: {self.fewest} of {self.needed}"
        arms = f"treatment {self.treatment}, control {self.control}"
        return f"units per arm: {self.fewest} of {self.needed} ({arms})"


class Detection(_Need):
    """How much longer the stage's traffic needs to detect a regression on the gating
    guardrail slowest to detect it."""

    guardrail: str
    effect: float = Field(
        description="The regression asked about, relative and signed: 0.5 is +50% (where lower"
        " is better), -0.5 is -50% (where higher is better)."
    )
    seconds: float | None = Field(
        ge=0, description="How much longer at the current traffic; 0: now; null: over 30 days."
    )

    def text(self) -> str:
        """``+50% on error rate: detectable in 12 min more at the current traffic``."""
        sign = "+" if self.effect > 0 else "-"
        what = f"{sign}{share_text(abs(self.effect))} on {metric_name(self.guardrail)}"
        if self.seconds is None:
            return f"{what}: not detectable within 30 days at the current traffic"
        if self.seconds == 0:
            return f"{what}: detectable now"
        return f"{what}: detectable in {span_text(self.seconds)} more at the current traffic"


class StageNeeds(_Need):
    """What a running stage the gate holds still needs before it may advance."""

    min_time_left_s: float | None = Field(
        description="Seconds left to the stage's minimum time; null: reached."
    )
    units: UnitsNeeded | None = Field(description="Units against the minimum; null: met.")
    partitions: str | None = Field(
        description="The partitions not yet counted that the stage waits for, in words; null: none."
    )
    untested: list[str] = Field(
        description="Why each gating guardrail is not yet tested, in the gate's words."
    )
    empty_ring: str | None = Field(
        description="The stage's ring, as rule text, when it has served no unit treatment a"
        " minute into the stage; null otherwise."
    )
    to_detect: Detection | None = Field(
        description="How long the current traffic needs to detect a +50% regression; null:"
        " no tested gating guardrail has a figure."
    )
    lines: list[str] = Field(
        description="Each of the above in words, a warning first, as the console and rolloutctl"
        " show them."
    )


def stage_needs(rollout: Rollout, verdict: Verdict | None, now: datetime) -> StageNeeds | None:
    """What ``rollout``'s running stage still needs, by the gate's ``verdict`` on it now.

    None unless the gate holds a running stage, and while the hold is on nothing counted
    here (a policy's warning, say): a stage the gate moves or acts on needs nothing.
    """
    if rollout.phase is not Phase.RUNNING or verdict is None:
        return None
    if verdict.kind is not VerdictKind.HOLD:
        return None
    evidence, stage = verdict.evidence, rollout.plan.stages[rollout.stage]
    elapsed = (now - rollout.stage_started_at).total_seconds()
    left = stage.min_duration.total_seconds() - elapsed
    needs = StageNeeds(
        min_time_left_s=max(round(left, 1), 0.1) if left > 0 else None,
        units=_units(rollout, evidence),
        partitions=None if evidence.incomplete is None else evidence.incomplete.waiting,
        untested=list(verdict.untested),
        empty_ring=_empty_ring(rollout, evidence, elapsed),
        to_detect=None,
        lines=[],
    )
    waits = (needs.min_time_left_s, needs.units, needs.partitions, needs.untested)
    if not any(part for part in (*waits, needs.empty_ring)):
        return None
    needs = needs.model_copy(update={"to_detect": _slowest(rollout, evidence, elapsed)})
    return needs.model_copy(update={"lines": _lines(needs)})


def _units(rollout: Rollout, evidence: GateEvidence) -> UnitsNeeded | None:
    """Units against the minimum, counted as the gate counts them; None once it is met."""
    arms, needed = evidence.arms or {}, rollout.plan.stages[rollout.stage].min_units_per_arm
    treatment, control = (arms[a].units if a in arms else 0 for a in ("treatment", "control"))
    alone = rollout.plan.limits is not None and rollout.percent >= 100  # no control to count
    fewest = treatment if alone else min(treatment, control)
    if fewest >= needed:
        return None
    return UnitsNeeded(
        needed=needed, fewest=fewest, treatment=treatment, control=None if alone else control
    )


def _empty_ring(rollout: Rollout, evidence: GateEvidence, elapsed_s: float) -> str | None:
    """The stage's ring, when a targeted stage has served no unit treatment for a while: the
    units its control counts may be everyone outside the ring (a ring at 100%)."""
    ring, arms = evidence.audience, evidence.arms or {}
    if not rollout.plan.targeted or ring is None or elapsed_s < NO_UNITS_AFTER.total_seconds():
        return None
    treatment = arms.get("treatment")
    if treatment is not None and treatment.units:
        return None
    return _ring_text(ring)


def _ring_text(ring: AudienceRing) -> str:
    if ring.rollout is None:
        return ring.stage
    return ring.rollout if ring.stage == "everyone" else f"{ring.stage} within {ring.rollout}"


def _slowest(rollout: Rollout, evidence: GateEvidence, elapsed_s: float) -> Detection | None:
    """The gating guardrail whose test needs longest to detect a +50% regression, with how
    long; None where no gating guardrail's test has a figure (or none compares arms)."""
    if rollout.percent >= 100 or elapsed_s <= 0:
        return None
    gating = {g.key for g in rollout.plan.guardrails if not g.dry_run}
    found: list[Detection] = []
    control = (evidence.arms or {}).get("control")
    for key, test in _tests(evidence):
        observed = _observed(test, elapsed_s, _final_share(evidence)) if key in gating else None
        base = _base(key, evidence, _control_rate(key, control))
        if observed is None or observed_detectable(observed, elapsed_s, base) is None:
            continue  # no figure: a test without its numbers, or no base to take a share of
        sign = 1 if test.direction == "lower_is_better" else -1
        more = observed_seconds_to_detect(observed, base, DEFAULT_EFFECT)
        seconds = None if more is None else round(more, 1)
        found.append(Detection(guardrail=key, effect=sign * DEFAULT_EFFECT, seconds=seconds))
    return max(found, key=_waited, default=None)


def _waited(found: Detection) -> float:
    return math.inf if found.seconds is None else found.seconds


def _lines(needs: StageNeeds) -> list[str]:
    """Each need in words: the warning first, then what the gate counts, in its order."""
    lines = []
    if needs.empty_ring is not None:
        lines.append(
            f"no units seen in this ring ({needs.empty_ring}): check that the apps' SDK loads"
            " segments and sends the attributes the ring's rule reads"
        )
    if needs.min_time_left_s is not None:
        lines.append(f"minimum stage time: {countdown_text(needs.min_time_left_s)} left")
    if needs.units is not None:
        lines.append(needs.units.text())
    if needs.partitions is not None:
        lines.append(needs.partitions)
    lines += needs.untested
    if needs.to_detect is not None:
        lines.append(needs.to_detect.text())
    return [line[:500] for line in lines]


def limit_stage_lines(plan: Plan, traffic: Traffic) -> list[str]:
    """Each stage without control (gated on the plan's limits), for ``plan validate
    --traffic``: what each limit catches by the stage's minimum, and what showing it under
    costs in time (``limits.require_proof``)."""
    lines = []
    for stage in limit_preview(plan, traffic):
        said = "; ".join(_limit_said(stage, figure) for figure in stage.limits)
        span = span_text(stage.seconds)
        lines.append(f"stage {stage.index + 1} (100%, {span}, no control): {said}")
    return lines


def _limit_said(stage: LimitStagePreview, figure: LimitFigure) -> str:
    name, base = metric_name(figure.name), _rate(figure.base)
    if figure.name in QUANTILE_SHARES:
        name = f"share of requests slower than {figure.limit:g} ms"
    caught = (
        f"caught above {_rate(figure.detectable)} ({stage.requests:,.0f} requests)"
        if figure.detectable is not None
        else f"no rate caught in {stage.requests:,.0f} requests"
    )
    said = f"{name} against {_rate(figure.ceiling)}: {caught}"
    proof = figure.proof_seconds
    if proof is None:
        never = ": the stage would never advance" if stage.require_proof else ""
        return f"{said}; never shown under at a {base} base{never}"
    extra = max(proof - stage.seconds, 0.0)
    if not stage.require_proof:
        return f"{said}; limits.require_proof would need {span_text(proof)} at a {base} base"
    held = f"{span_text(extra)} past its minimum" if extra else "within its minimum"
    return f"{said}; shown under after {span_text(proof)} at a {base} base: held {held}"


def _rate(share: float) -> str:
    """A rate in percent with two significant digits: ``5.6%``, ``0.52%``, ``36%``."""
    percent = share * 100
    return f"{percent:.{decimals_for(percent)}f}%"
