"""What a canary report holds: its stages, decisions, charts and notes, ready to render.

Plain data, built by :func:`controller.ctl.report.report.build` from the typed
inputs (the rollout's :class:`~controller.core.reading.views.RolloutStatus`, its
:class:`~controller.core.wire.messages.Decision` messages and its
:class:`~controller.core.reading.served_history.RolloutHistory`) and rendered by
:mod:`controller.ctl.report.render` as Markdown or HTML, or printed as JSON
(``rolloutctl report --json``: these fields, in this order). The charts are
the console's :class:`~controller.console.figures.Figure`, so the report
lives beside the tools, above the console, not in the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.console.figures import Figure
from controller.ctl.report.moves import TriggerFired, WindowWait


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm's counts in a stage, as the gate saw them."""

    name: str
    units: int | None
    exposures: int | None
    requests: int | None
    errors: int | None
    conversions: int | None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    """The arm's own latency quantiles; None without latency events (or from an older gate)."""
    named_conversions: dict[str, int | None] = field(default_factory=dict)
    """The conversions of each name the plan's guardrails read; empty when none does."""


@dataclass(frozen=True, slots=True)
class GuardrailResult:
    """One guardrail's sequential test in a stage: delta (treatment - control) and its bound."""

    metric: str
    result: str
    """The guardrail's state (:func:`~controller.core.reading.guardrail_state`): ``regressed``,
    ``watching``, ``not yet tested``, ``undecided`` or ``holds``."""
    delta: float | None = None
    lower: float | None = None
    upper: float | None = None
    tolerance: float | None = None
    p_value: float | None = None
    widening: str = ""
    """Why its interval is as wide as it is, in words: how much units widen it, or that it
    assumes independent requests (:func:`~controller.core.reading.widening_text`); empty
    when there is nothing to say."""
    direction: str = ""
    """``lower_is_better`` or ``higher_is_better``; empty from an evidence that gave none."""
    why: str = ""
    """Why the guardrail is in its state, in words: ``above tolerance, not yet significant``."""

    def said(self) -> str:
        """The state with why, as every surface writes it: ``watching (above tolerance, …)``."""
        return f"{self.result} ({self.why})" if self.why else self.result


@dataclass(frozen=True, slots=True)
class SampleRatio:
    """The sample-ratio check in a stage: treatment's units against what the split expects."""

    observed_treatment: float | None
    observed_control: float | None
    expected_treatment: float | None
    sequential_p_value: float | None
    flagged: bool


@dataclass(slots=True)
class StageReport:
    """One stage (or the watch after the last one): when, how it ended, what the gate saw."""

    index: int
    label: str
    percent: float | None
    started_at: str | None
    ended_at: str | None = None
    duration_s: float | None = None
    outcome: str = "running"
    evidence_from: str = ""
    """Which decision the numbers are from (``rollback at 10:04:05``), or the live view."""
    watch: bool = False
    arms: list[Arm] = field(default_factory=list)
    guardrails: list[GuardrailResult] = field(default_factory=list)
    srm: SampleRatio | None = None
    """None when the evidence held no sample-ratio check."""
    comparison: str = ""
    """Without a concurrent control: that, and the absolute limits the stage was gated on."""
    audience: str = ""
    """A targeted rollout's ring in the rule text form (``segment("staff") 100%``); empty when
    untargeted."""
    compared: str = ""
    """With a ring: what its treatment was compared against (a concurrent control or absolute
    limits)."""
    sources: list[str] = field(default_factory=list)
    """What the gate read from Prometheus: each query as asked and each arm's numbers."""
    failures: list[str] = field(default_factory=list)
    """What broke: the failures by fingerprint the gate named, in words, the most telling
    first."""


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """A decision, who made it, and what the advisor said alongside."""

    ts: str
    stage: str
    action: str
    outcome: str
    by: str
    reason: str
    advisor: str | None = None


@dataclass(slots=True)
class Report:
    """Everything a canary report shows, ready to render or to print as JSON."""

    flag: str
    rollout_id: str
    plan: str
    phase: str
    percent: float | None
    started_at: str | None
    generated_at: str
    stages: list[StageReport] = field(default_factory=list)
    decisions: list[DecisionRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    charts: list[Figure] = field(default_factory=list)
    """One per guardrail: its gate history over the whole rollout, when the controller has one."""
    verdict: str = ""
    """The rollout's verdict in one line, the first thing the report says."""
    narrative: str | None = None
    """A few sentences by the model, every number in them checked against the evidence."""
    narrated_by: str | None = None
    waits: list[WindowWait] = field(default_factory=list)
    """Each wait for a release window, from when to when."""
    triggers: list[TriggerFired] = field(default_factory=list)
    """Each health trigger that fired: its action and the policy entry that chose it."""
