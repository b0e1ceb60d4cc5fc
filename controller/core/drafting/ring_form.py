"""Ring plans a model can be held to: rings in order, each an audience and a percent of it.

``rolloutctl rule draft --rings`` asks a model for the rings of a rollout
("staff first, then the beta list, then Thai users at 25%, then everyone")
in this shape, whose JSON Schema (:func:`rings_schema`) takes each audience
in the flat form of :mod:`controller.core.drafting.rule_form`, or ``"everyone"``::

    {"rings": [
      {"audience": {"match": "all", "conditions": [
         {"attribute": "user_id", "op": "in segment", "value": "staff"}]}, "percent": 100},
      {"audience": "everyone", "percent": 100}]}

:func:`rings_in` reads a reply into :class:`DraftRing` values or says why it
cannot (an audience may also be a rule in the text form); :func:`ring_plan`
makes them the stages of a real :class:`~controller.core.rollouts.plan.Plan`, so what
is printed is what ``rolloutctl start --plan`` takes, after the rings are
checked to widen (:func:`widening_problem`, the plan's own
:func:`~controller.core.rules.targeting.rings_problem` in ring numbers, and no ring
repeated). :func:`ring_findings` lints each ring's rule against the catalogue
and reads the rings as a whole; :func:`ring_preview` counts, per ring, the
example contexts its audience reaches that no earlier ring's did.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from controller.core.common import ConfigError
from controller.core.drafting.rule_form import draft_schema, from_form, is_form
from controller.core.drafting.rule_lint import Catalogue, Finding, lint
from controller.core.rollouts import Guardrail, Limits, Plan, Stage, parse_plan
from controller.core.rollouts import lint as plan_lint
from controller.core.rules import (
    MAX_RINGS,
    NO_SEGMENTS,
    Audience,
    AudienceRule,
    Context,
    RuleSyntaxError,
    SegmentLookup,
    audience_key,
    parse,
    rings_problem,
    to_text,
)

EVERYONE = "everyone"
MIN_RING_PERCENT = 0.1
"""The smallest share of its audience a ring may serve: the schema's minimum, as a plan
draft's smallest stage."""
RING_LIMITS = Limits(error_rate=0.01)
"""What gates a ring served to 100% of its audience before the last: it has no control."""
RING_GUARDRAILS = (
    Guardrail(metric="error_rate", tolerance=0.0),
    Guardrail(metric="latency_p99", tolerance=0.10, relative=True),
)
RING_SOAK = timedelta(hours=1)
RING_UNITS = 150


@dataclass(frozen=True, slots=True)
class DraftRing:
    """One ring of a draft: its audience (``None``: everyone) and the percent of it served."""

    audience: AudienceRule | None
    percent: float

    @property
    def text(self) -> str:
        return EVERYONE if self.audience is None else to_text(self.audience)


def rings_schema(catalogue: Catalogue | None) -> dict[str, Any]:
    """The ring plan's JSON Schema: at most :data:`MAX_RINGS` rings, audiences in the flat form."""
    audience = {"anyOf": [{"type": "string", "enum": [EVERYONE]}, draft_schema(catalogue)]}
    ring = {
        "type": "object",
        "properties": {
            "audience": audience,
            "percent": {"type": "number", "minimum": MIN_RING_PERCENT, "maximum": 100},
        },
        "required": ["audience", "percent"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "rings": {"type": "array", "items": ring, "minItems": 1, "maxItems": MAX_RINGS},
        },
        "required": ["rings"],
        "additionalProperties": False,
    }


def rings_in(data: object, catalogue: Catalogue | None) -> list[DraftRing] | str:
    """The rings a parsed reply gives, or why it gives none (may quote the reply: bound it)."""
    if not isinstance(data, dict) or not isinstance(data.get("rings"), list):
        return 'the draft needs {"rings": [...]}'
    if not data["rings"]:
        return "the draft has no rings"
    if len(data["rings"]) > MAX_RINGS:
        return f"the draft has {len(data['rings'])} rings, at most {MAX_RINGS} (a plan's stages)"
    rings: list[DraftRing] = []
    for n, part in enumerate(data["rings"], start=1):
        ring = _ring(part, catalogue)
        if isinstance(ring, str):
            return f"ring {n}: {ring}"
        rings.append(ring)
    return rings


def _ring(part: object, catalogue: Catalogue | None) -> DraftRing | str:
    if not isinstance(part, dict) or set(part) != {"audience", "percent"}:
        return "not an object of audience and percent"
    percent = part["percent"]
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        return "the percent is not a number"
    if not (math.isfinite(percent) and MIN_RING_PERCENT <= percent <= 100):
        return (
            f"the percent must be from {MIN_RING_PERCENT:g} to 100, got {float(percent):g}"
            " (a ring smaller than that sees too few units to judge)"
        )
    audience = part["audience"]
    if audience == EVERYONE:
        return DraftRing(None, float(percent))
    if is_form(audience):
        rule = from_form(audience, catalogue)
    elif isinstance(audience, str):
        try:
            rule = parse(audience)
        except RuleSyntaxError as exc:
            rule = f"the audience does not parse: {exc}"
    else:
        return 'the audience is neither "everyone" nor a rule'
    return rule if isinstance(rule, str) else DraftRing(rule, float(percent))


_STAGES = re.compile(r"stages(?:\.(\d+)|\[(\d+)\])(?:\.\w+)?|\bstage (\d+)\b")


def _in_rings(problem: str) -> str:
    """A plan's problem in ring numbers: ``stages.2.percent``, ``stages[2].percent`` and
    ``stage 2`` are ring 3."""
    return _STAGES.sub(lambda m: f"ring {int(next(g for g in m.groups() if g)) + 1}", problem)


def widening_problem(rings: Sequence[DraftRing]) -> str | None:
    """Why the rings do not widen, in ring numbers; None when they do.

    A ring repeated is refused first; then the plan's own rule: a ring naming
    an earlier audience serves more of it, and none narrows after everyone.
    """
    seen: dict[tuple[str, float], int] = {}
    for n, ring in enumerate(rings, start=1):
        first = seen.setdefault((audience_key(ring.audience), ring.percent), n)
        if first != n:
            return f"ring {n} repeats ring {first}"
    problem = rings_problem(None, rings, limited=True)
    if problem is None:
        return None
    return _in_rings(problem)


def ring_plan(rings: Sequence[DraftRing], *, name: str = "draft-rings") -> Plan | str:
    """The plan whose stages are the rings, or why there is none.

    Each ring soaks :data:`RING_SOAK` and waits for :data:`RING_UNITS` units
    per arm (the last, at 100% of everyone, completes at once); the guardrails
    are :data:`RING_GUARDRAILS`, and a ring at 100% before the last, having no
    control, is gated by :data:`RING_LIMITS`.
    """
    problem = widening_problem(rings)
    if problem is not None:
        return problem
    stages = []
    for n, ring in enumerate(rings, start=1):
        final = n == len(rings) and ring.audience is None and ring.percent == 100
        stages.append(
            Stage(
                percent=ring.percent,
                audience=ring.audience,
                min_duration=timedelta(0) if final else RING_SOAK,
                min_units_per_arm=0 if final else RING_UNITS,
            )
        )
    data: dict[str, Any] = {"name": name, "stages": stages, "guardrails": list(RING_GUARDRAILS)}
    if any(r.percent == 100 for r in rings[:-1]):
        data["limits"] = RING_LIMITS
    try:
        return parse_plan(data, source="ring plan")
    except ConfigError as exc:
        return _in_rings(str(exc))


def ring_findings(rings: Sequence[DraftRing], catalogue: Catalogue | None) -> list[Finding]:
    """Each ring's rule linted against ``catalogue``, and what the rings say as a whole."""
    found = [
        Finding(f.severity, f"ring {n}: {f.message}")
        for n, ring in enumerate(rings, start=1)
        if ring.audience is not None
        for f in lint(ring.audience, catalogue)
    ]
    last = rings[-1]
    if last.audience is not None or last.percent != 100:
        found.append(
            Finding(
                "warning",
                f"the last ring serves {last.percent:g}% of {last.text}: the rollout completes"
                " there and never reaches everyone",
            )
        )
    if len(rings) == 1 and last.audience is None:
        found.append(Finding("warning", "one ring of everyone: no smaller ring goes first"))
    return sorted(found, key=lambda f: f.severity != "error")


def plan_findings(plan: Plan) -> list[Finding]:
    """What ``rolloutctl plan validate`` finds in the rings' plan, in ring numbers: the
    review a plan draft gets (an error is a plan the controller would refuse)."""
    return [Finding(f.severity, _in_rings(f"{f.field}: {f.message}")) for f in plan_lint(plan)]


@dataclass(frozen=True, slots=True)
class RingPreview:
    """Example contexts a ring's audience reaches that no earlier ring's did, and in all so far.

    ``unknown``: contexts no earlier ring reached whose truth this ring's rule
    cannot tell (an attribute missing; a segment, which is not looked up).
    """

    newly: int
    reached: int
    unknown: int


def ring_preview(
    rings: Sequence[DraftRing], contexts: Sequence[Context], segments: SegmentLookup = NO_SEGMENTS
) -> list[RingPreview]:
    """Per ring, how many of ``contexts`` its audience newly reaches, and how many in all."""
    left = list(contexts)
    previews: list[RingPreview] = []
    reached = 0
    for ring in rings:
        audience = None if ring.audience is None else Audience.of(ring.audience)
        truths = [True if audience is None else audience.truth(c, segments) for c in left]
        newly = sum(t is True for t in truths)
        reached += newly
        unknown = sum(t is None for t in truths)
        previews.append(RingPreview(newly=newly, reached=reached, unknown=unknown))
        left = [c for c, t in zip(left, truths, strict=True) if t is not True]
    return previews


def preview_findings(
    rings: Sequence[DraftRing], previews: Sequence[RingPreview], total: int
) -> list[Finding]:
    """Warnings a preview on ``total`` contexts gives: a ring surely reaching no one new (not
    one it cannot tell of), a rule ring as wide as everyone."""
    found: list[Finding] = []
    named: set[str] = set()
    for n, (ring, seen) in enumerate(zip(rings, previews, strict=True), start=1):
        key = audience_key(ring.audience)
        again = key in named  # a ring raising an earlier one's percent: it widens by percent
        named.add(key)
        if total and seen.newly == seen.unknown == 0 and not again:
            found.append(
                Finding("warning", f"ring {n} reaches no example context an earlier ring did not")
            )
        elif ring.audience is not None and seen.newly == total > 1:
            found.append(
                Finding("warning", f"ring {n} reaches every example context: wider than asked?")
            )
    return found


@dataclass(frozen=True, slots=True)
class RingDraft:
    """Rings that make a plan, what the lint says of them and, given contexts, their preview."""

    rings: list[DraftRing]
    plan: Plan
    findings: list[Finding]
    previews: list[RingPreview] | None = None
    total: int = 0


def review_rings(
    rings: list[DraftRing], catalogue: Catalogue | None, contexts: Sequence[Context] | None
) -> RingDraft | str:
    """The rings as a plan, linted and, given ``contexts``, previewed; or why they make none."""
    plan = ring_plan(rings)
    if isinstance(plan, str):
        return plan
    findings = sorted(
        ring_findings(rings, catalogue) + plan_findings(plan), key=lambda f: f.severity != "error"
    )
    if contexts is None:
        return RingDraft(rings, plan, findings)
    previews = ring_preview(rings, contexts)
    findings += preview_findings(rings, previews, len(contexts))
    return RingDraft(rings, plan, findings, previews, len(contexts))
