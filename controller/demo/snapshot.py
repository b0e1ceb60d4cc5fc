"""The demo's state at one instant, as plain data: what the view renders.

Pure. :func:`flag_view` combines a flag's rollout (from Redis), the gate's
verdict on its current stage (the pure :func:`controller.core.machine.gate.evaluate`
run on the aggregates just read) and what the controller published about it.
:func:`run_outcome` says whether the run showed what it should.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from controller.core.reading import comparison_text, percent_text, quotable_rationale
from controller.core.rollouts import Phase, Plan, Rollout, Verdict
from controller.core.rules import to_text
from controller.core.wire import AdvisorReply, ArmTally, GateEvidence, GuardrailTest
from controller.demo.scenario import DemoFlag
from controller.demo.tracking import FlagRecord


@dataclass(frozen=True, slots=True)
class ArmView:
    """One arm's counts in the evidence shown."""

    exposures: int = 0
    requests: int = 0
    errors: int = 0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True, slots=True)
class BoundView:
    """The error-rate guardrail's sequential test: Δ = treatment - control, and its bounds.

    The flag is rolled back when ``lower`` > 0: treatment fails more often than
    control beyond what chance explains, however often the test was looked at.
    """

    delta: float
    lower: float
    upper: float
    p_value: float
    regressed: bool
    tolerance: float = 0.0
    """The harm tolerated, as the gate's test has it (absolute, non-negative)."""
    direction: str = "lower_is_better"


@dataclass(frozen=True, slots=True)
class AdvisorView:
    """The advisor's latest opinion: advance, hold, rollback, or unavailable (with why)."""

    action: str
    confidence: float | None
    rationale: str
    """The model's own words; for ``unavailable``, why; empty when incoherent."""
    model: str = ""
    incoherence: str = ""
    """Why the rationale contradicts the action or gives no reason: it is not quoted."""


@dataclass(frozen=True, slots=True)
class FlagView:
    """One flag, ready to render."""

    flag: str
    faulty: bool
    phase: str
    stage: int
    stages: int
    stage_percent: float
    percent: float
    """The share of the stage's audience served treatment now (0 once rolled back)."""
    rings: tuple[str, ...]
    """Each stage's ring and its percent (``country == "TH" 25%``, ``everyone 50%``);
    none when the rollout is untargeted."""
    seconds_in_stage: float | None
    treatment: ArmView
    control: ArmView
    bound: BoundView | None
    limits: str
    """At a ring served to all of its audience: its limits' tests in words (no control)."""
    live: bool
    """Whether the counts are the current stage's, or the last comparison's."""
    note: str
    advisor: AdvisorView | None
    advice_counts: tuple[tuple[str, int], ...]
    decisions: int
    stages_passed: int
    rollback_reason: str | None
    rollback_alerted: bool

    @property
    def finished(self) -> bool:
        return self.phase in {p.value for p in Phase if p.terminal}

    @property
    def ring(self) -> str:
        """The current stage's ring and percent; empty when untargeted."""
        return self.rings[self.stage] if self.stage < len(self.rings) else ""


@dataclass(frozen=True, slots=True)
class DemoSnapshot:
    """Everything on screen at one instant."""

    elapsed_s: float
    flags: tuple[FlagView, ...]
    events_sent: int
    events_per_s: float
    advisor: str
    """``off``, or the mode and model, e.g. ``advisory, smollm2-135m-instruct``."""
    fault: str
    log_path: str


def flag_view(
    flag: DemoFlag,
    rollout: Rollout | None,
    verdict: Verdict | None,
    record: FlagRecord,
    now: datetime,
) -> FlagView:
    """The view of ``flag``; ``verdict`` is the gate's on the current stage, if active."""
    live = rollout is not None and rollout.phase.active and verdict is not None
    evidence = (
        verdict.evidence
        if live and verdict
        else (record.evidence.gate() if record.evidence else GateEvidence())
    )
    arms = evidence.arms or {}
    return FlagView(
        flag=flag.name,
        faulty=flag.faulty,
        phase=rollout.phase.value if rollout else Phase.PENDING.value,
        stage=rollout.stage if rollout else 0,
        stages=len(rollout.plan.stages) if rollout else 0,
        stage_percent=rollout.plan.stages[rollout.stage].percent if rollout else 0.0,
        percent=rollout.percent if rollout else 0.0,
        rings=rings(rollout.plan) if rollout else (),
        seconds_in_stage=_in_stage(rollout, now),
        treatment=_arm(arms.get("treatment")),
        control=_arm(arms.get("control")),
        bound=_bound(evidence),
        limits=comparison_text(evidence),
        live=live,
        note=_note(rollout, verdict, record),
        advisor=_advisor(record.advice[-1]) if record.advice else None,
        advice_counts=tuple(sorted(record.advice_counts().items())),
        decisions=record.decisions,
        stages_passed=_stages_passed(rollout),
        rollback_reason=record.rollback_reason,
        rollback_alerted=record.rollback_alerted(),
    )


def rings(plan: Plan) -> tuple[str, ...]:
    """Each stage's ring in the rule text form with its percent; none when untargeted."""
    if not plan.targeted:
        return ()
    return tuple(
        f"{'everyone' if s.audience is None else to_text(s.audience)} {percent_text(s.percent)}"
        for s in plan.stages
    )


def run_outcome(views: Iterable[FlagView]) -> tuple[bool, list[str]]:
    """Whether the run showed what it should: healthy flags complete, the faulty one rolls back.

    Returns the verdict and one line per flag that did not.
    """
    problems = []
    for view in views:
        expected = Phase.ROLLED_BACK if view.faulty else Phase.COMPLETED
        if view.phase != expected.value:
            problems.append(f"{view.flag}: {view.phase}, expected {expected.value}")
        elif view.faulty and not view.rollback_alerted:
            problems.append(f"{view.flag}: rolled back, but no rollback alert was published")
    return not problems, problems


def _in_stage(rollout: Rollout | None, now: datetime) -> float | None:
    if rollout is None or not rollout.phase.active:
        return None
    return max(0.0, (now - rollout.stage_started_at).total_seconds())


def _stages_passed(rollout: Rollout | None) -> int:
    if rollout is None:
        return 0
    return len(rollout.plan.stages) if rollout.phase is Phase.COMPLETED else rollout.stage


def _arm(tally: ArmTally | None) -> ArmView:
    if tally is None:
        return ArmView()
    return ArmView(exposures=tally.exposures, requests=tally.requests, errors=tally.errors)


def _bound(evidence: GateEvidence) -> BoundView | None:
    test = (evidence.guardrails or {}).get("error_rate")
    if not isinstance(test, GuardrailTest):
        return None
    view = BoundView(
        delta=float(test.delta),
        lower=float(test.lower),
        upper=float(test.upper),
        p_value=float(test.p_value),
        regressed=test.regressed,
        tolerance=float(test.tolerance),
        direction=test.direction,
    )
    return view if math.isfinite(view.lower) and math.isfinite(view.upper) else None


def _note(rollout: Rollout | None, verdict: Verdict | None, record: FlagRecord) -> str:
    if rollout is None:
        return "waiting for the start command"
    if rollout.phase.active and verdict is not None:
        return f"gate: {verdict.kind.value}, {verdict.reason}"
    return record.last_reason


def _advisor(advice: AdvisorReply) -> AdvisorView:
    if advice.status != "ok":
        return AdvisorView("unavailable", None, advice.cause or "")
    rationale, incoherent = quotable_rationale(advice)
    return AdvisorView(
        action=advice.action or "?",
        confidence=None if advice.confidence is None else float(advice.confidence),
        rationale=rationale,
        model=advice.model or "",
        incoherence=incoherent,
    )
