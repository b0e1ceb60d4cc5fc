"""Plans that validate but cannot do what they say: findings with a severity and a field.

:mod:`controller.core.rollouts.plan` checks each value on its own (a percent in
(0, 100], a count within bounds); a plan made of valid values can still be
one that never completes or never protects anyone. :func:`lint` reads the
whole plan and says so:

* an **error** is a plan that cannot work: a stage that can never complete,
  a guardrail that can never be tested, a test level so small that no
  regression trips it before small stages end. ``rolloutctl plan validate``
  exits 78 on one and the controller refuses to ``start`` it;
* a **warning** is a plan that works but is risky: a jump from a small stage
  straight to 100%, no guardrail that may act. It is printed (and in
  ``--json``); a model's draft with one is not offered as a sane plan.

Each finding names its field as people write a path (``stages[4].min_units_per_arm``).
Pure: the plan in, findings out.

The thresholds are measured with the gate's own tests (the sequential test and
the sample-ratio check, default ``n_tune``): a doubled error rate (2% → 4%) is
caught after about 1,200 requests per arm at alpha 0.05, 2,400 at 0.001, 4,500
at 10⁻⁶ and 6,600 at 10⁻⁹; a treatment arm losing a fifth of its units in a 50%
stage is flagged after about 1,800 units at an SRM threshold of 0.001, 3,100 at
10⁻⁶ and 4,400 at 10⁻⁹ (44,000, 78,000 and 112,000 in a 1% stage).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.windows import Window, never_opens
from controller.core.rules import MAX_CONSTRAINT_VALUES, Segment, conditions

Severity = Literal["error", "warning"]

COMPLETION_SERVES = "serving 100%: a completed rollout gives the feature to every unit"
"""What completion serves, whatever percent the plan's last stage had."""
SMALL_BEFORE_FULL = 25.0
"""A stage below this percent right before everyone gets the feature is a jump."""
MAX_TESTABLE_EVENTS = 10_000_000
"""More events of a metric in one arm of one stage than a guardrail may wait for."""
MANY_EVENTS = 100_000
"""Guardrails blind until each arm has this many events: small stages pass untested."""
MIN_ALPHA = 1e-6
"""Below this alpha a regression needs about four times the evidence it needs at 0.05."""
LOW_ALPHA = 1e-3
"""Below this alpha a regression needs about twice the evidence it needs at 0.05."""
MIN_SRM_P = 1e-9
"""Below this SRM threshold a broken split needs about 2.5 times the units it needs at 0.001."""
LOW_SRM_P = 1e-5
"""Below this SRM threshold a broken split needs about 1.5 times the units it needs at 0.001."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong with a plan: how bad, which field, and why, in a sentence."""

    severity: Severity
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.field}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "field": self.field, "message": self.message}


def lint(plan: Plan, now: datetime | None = None) -> list[Finding]:
    """Everything that makes ``plan`` unable to work (errors) or risky (warnings), errors first.

    Given ``now`` (when the plan is about to be used: ``plan validate``, a start), a
    release window that never opens again is an error too: an allow window would keep
    the rollout waiting forever, and a deny window is a freeze already over.
    """
    found = [
        *_stages(plan),
        *_floors(plan),
        *_jump(plan),
        *_short(plan),
        *_guardrails(plan),
        *_levels(plan),
        *_segments(plan),
        *_sourced_units(plan),
    ]
    if now is not None:
        found += _windows(plan, now)
    return sorted(found, key=lambda f: f.severity != "error")


def errors(findings: Sequence[Finding]) -> list[Finding]:
    """The findings that make a plan unable to work."""
    return [f for f in findings if f.severity == "error"]


def _stages(plan: Plan) -> Iterator[Finding]:
    for i, stage in enumerate(plan.stages):
        if stage.percent == 100 and stage.min_units_per_arm > 0 and plan.limits is None:
            yield Finding(
                "error",
                f"stages[{i}].min_units_per_arm",
                f"at 100% every unit gets the feature and the control arm stays empty, so"
                f" this stage never has {stage.min_units_per_arm} units per arm and never"
                " completes: set it to 0",
            )


def _floors(plan: Plan) -> Iterator[Finding]:
    """A compared stage whose unit floor is below the plan's event floor for every metric.

    The stage holds until each gating guardrail is tested (``min_metric_events``
    in each arm; p95 and p99 need more, which their docs say), so such a unit
    floor does not say when the stage can end: the event floor does. A floor of
    0 says there is none (a stage moved by commands) and is not flagged.
    """
    floor = plan.min_metric_events
    if floor > MANY_EVENTS or not any(not g.dry_run for g in plan.guardrails):
        return  # too many events is its own finding; nothing to test, nothing held
    for i, stage in enumerate(plan.stages):
        if stage.percent < 100 and 0 < stage.min_units_per_arm < floor:
            yield Finding(
                "warning",
                f"stages[{i}].min_units_per_arm",
                f"{stage.min_units_per_arm} units per arm, but no guardrail is tested before"
                f" {floor} events of its metric per arm (min_metric_events), and an untested"
                f" guardrail holds the stage: set it to at least {floor}",
            )


def _sourced_units(plan: Plan) -> Iterator[Finding]:
    """Every gating guardrail reads Prometheus, yet a compared stage waits for units.

    Units are counted from exposure events only; apps guarded through their
    Prometheus metrics may send none, and the stage would then hold forever.
    """
    gating = [g for g in plan.guardrails if not g.dry_run]
    if not gating or any(g.source == "events" for g in gating):
        return
    for i, stage in enumerate(plan.stages):
        if stage.percent < 100 and stage.min_units_per_arm > 0:
            yield Finding(
                "warning",
                f"stages[{i}].min_units_per_arm",
                f"{stage.min_units_per_arm} units per arm are counted from exposure events only,"
                " and every guardrail of this plan reads Prometheus: apps that send no events"
                " hold this stage forever; set it to 0 unless they send exposures",
            )


def _short(plan: Plan) -> Iterator[Finding]:
    """A plan ending below 100% still completes, and completion serves everyone.

    Below :data:`SMALL_BEFORE_FULL` :func:`_jump` already says so, with the risk.
    """
    last = len(plan.stages) - 1
    percent = plan.stages[last].percent
    if SMALL_BEFORE_FULL <= percent < 100:
        yield Finding(
            "warning",
            f"stages[{last}].percent",
            f"the plan ends at {percent:g}%, but it does not stop there: when this stage"
            f" passes the rollout completes, {COMPLETION_SERVES}; to hold at {percent:g}%,"
            " pause the rollout before this stage ends, or end the plan with a 100% stage",
        )


def _jump(plan: Plan) -> Iterator[Finding]:
    """Everyone gets the feature after a small stage: at the 100% stage, or on completion."""
    stages = plan.stages
    last = len(stages) - 1
    if stages[last].percent == 100:
        before = stages[last - 1].percent if last > 0 else 0.0
        field = f"stages[{last}].percent"
        where = f"this stage goes from {before:g}% straight to 100%"
    else:
        before, field = stages[last].percent, f"stages[{last}].percent"
        where = f"the rollout completes at 100% right after this {before:g}% stage"
    if before >= SMALL_BEFORE_FULL:
        return
    if before == 0:
        where = "the only stage serves 100%: there is never a control arm to compare with"
    yield Finding(
        "warning",
        field,
        f"{where}; a regression that shows only at scale reaches every unit at once:"
        f" add a stage of at least {SMALL_BEFORE_FULL:g}% before everyone",
    )


def _guardrails(plan: Plan) -> Iterator[Finding]:
    if not plan.guardrails:
        yield Finding(
            "warning",
            "guardrails",
            "no guardrail: nothing rolls back or pauses on a regression, only the"
            " sample-ratio check and the stage timers act",
        )
    elif all(g.dry_run for g in plan.guardrails):
        yield Finding(
            "warning",
            "guardrails[*].dry_run",
            "every guardrail is a dry run: each is tested and alerted on but never rolls back,"
            " pauses or holds, so the rollout advances whatever the metrics show",
        )
    events = plan.min_metric_events
    if plan.guardrails and events > MAX_TESTABLE_EVENTS:
        yield Finding(
            "error",
            "min_metric_events",
            f"{events:,} events of a metric in one arm of one stage before its guardrail is"
            f" tested: no stage sees that many, so no guardrail is ever tested"
            f" (at most {MAX_TESTABLE_EVENTS:,})",
        )
    elif plan.guardrails and events > MANY_EVENTS:
        yield Finding(
            "warning",
            "min_metric_events",
            f"guardrails are not tested until an arm has {events:,} events of their metric:"
            " small stages end untested",
        )


def _levels(plan: Plan) -> Iterator[Finding]:
    if plan.alpha < MIN_ALPHA:
        yield Finding(
            "error",
            "alpha",
            f"{plan.alpha:g} is below {MIN_ALPHA:g}: a regression needs four times or more the"
            " evidence it needs at 0.05, so small stages end before any guardrail can trip",
        )
    elif plan.alpha < LOW_ALPHA:
        yield Finding(
            "warning",
            "alpha",
            f"{plan.alpha:g} is below {LOW_ALPHA:g}: a regression needs about twice the evidence"
            " it needs at 0.05 before a guardrail trips",
        )
    if plan.srm_p_threshold < MIN_SRM_P:
        yield Finding(
            "error",
            "srm_p_threshold",
            f"{plan.srm_p_threshold:g} is below {MIN_SRM_P:g}: a broken split needs over twice"
            " the units it needs at 0.001 to be flagged, so small stages end before it can be",
        )
    elif plan.srm_p_threshold < LOW_SRM_P:
        yield Finding(
            "warning",
            "srm_p_threshold",
            f"{plan.srm_p_threshold:g} is below {LOW_SRM_P:g}: a broken split needs about 1.5"
            " times the units it needs at 0.001 to be flagged",
        )


def _windows(plan: Plan, now: datetime) -> list[Finding]:
    return window_findings(plan.windows or (), now)


def window_findings(
    windows: tuple[Window, ...], now: datetime, field: str = "windows"
) -> list[Finding]:
    """Errors for release windows (a plan's, a pipeline step's, at ``field``) that never
    open again from ``now``: each one whose every opening is over and, failing that, all
    of them together when none ever allows a forward move again."""
    found = list(_window_ends(windows, now, field))
    shut = None if found else never_opens(windows, now)
    return found if shut is None else [Finding("error", field, shut)]


def _window_ends(windows: tuple[Window, ...], now: datetime, prefix: str) -> Iterator[Finding]:
    """Each window whose every opening is over, by its field."""
    for i, window in enumerate(windows):
        if window.opens_again(now):
            continue
        moment = f"{now:%Y-%m-%d %H:%M} UTC"
        if window.rule is None:
            field, why = f"{prefix}[{i}].to", f"this one-off window closed before {moment}"
        else:
            field, why = f"{prefix}[{i}].rule", f"its COUNT or UNTIL ends it before {moment}"
        if window.kind == "allow":
            yield Finding(
                "error", field, f"{why}: it never opens again, so a rollout waits forever"
            )
        else:
            yield Finding("error", field, f"{why}: a freeze that never applies again; remove it")


def _segments(plan: Plan) -> Iterator[Finding]:
    """Segments a plan served by Unleash names: read when the sync writes, not now."""
    if plan.unleash is None:
        return
    rules = [("audience", plan.audience)]
    rules += [(f"stages[{i}].audience", s.audience) for i, s in enumerate(plan.stages)]
    for field, rule in rules:
        for condition in conditions(rule.root) if rule is not None else []:
            if isinstance(condition.value, Segment):
                name = condition.value.segment
                yield Finding(
                    "warning",
                    field,
                    f"Unleash gets segment {name!r} written into the strategy when the sync"
                    f" writes: an id list of at most {MAX_CONSTRAINT_VALUES} ids, or a rule"
                    f" that tests {condition.attribute}; otherwise the sync alerts and leaves"
                    " Unleash serving what it served",
                )
