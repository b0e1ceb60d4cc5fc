"""Rule and ring drafts from an agent, checked as ``rolloutctl rule draft`` checks a model's.

The agent is the model here: it gives a rule in the text form, or rings (each
an audience in the text form, or ``everyone``, and the percent of it served).
A rule is parsed and linted (:func:`controller.core.drafting.lint`); rings
become the stages of a real plan (:func:`controller.core.drafting.review_rings`),
shown as the YAML ``rolloutctl start --plan`` and ``propose_start`` take.
Nothing is applied: a rule reaches the controller only in a plan a person starts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from controller.core.common import ControllerError
from controller.core.drafting import DraftRing, lint, plan_yaml, review_rings
from controller.core.drafting import errors as rule_errors
from controller.core.rules import AudienceRule, RuleSyntaxError, parse, to_text

EVERYONE = "everyone"
MAX_RINGS_GIVEN = 20
"""A plan has at most 20 stages, so at most 20 rings."""


class Ring(BaseModel):
    """One ring as an agent gives it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    audience: str = Field(max_length=4096, description='A rule in the text form, or "everyone".')
    percent: float = Field(gt=0, le=100, description="The share of the ring served treatment.")


class RuleDraft(BaseModel):
    """A rule as the controller reads it, with what its lint found."""

    model_config = ConfigDict(frozen=True)

    rule: str = Field(description="The rule in the text form, as the controller writes it.")
    findings: list[str] = Field(description='Each "error: ..." or "warning: ...".')
    usable: bool = Field(description="False when a finding is an error.")
    note: str = "A draft: nothing is applied. Put it in a plan stage and propose that plan's start."


class RingsDraft(BaseModel):
    """Rings as a plan, with what the lint found."""

    model_config = ConfigDict(frozen=True)

    plan_yaml: str = Field(description="The plan, as propose_start takes it.")
    findings: list[str]
    usable: bool
    note: str = "A draft: nothing is applied. Propose its start with propose_start."


def rule_draft(text: str) -> RuleDraft:
    rule = _parsed(text)
    findings = lint(rule, None)
    return RuleDraft(
        rule=to_text(rule),
        findings=[f"{f.severity}: {f.message}" for f in findings],
        usable=not rule_errors(findings),
    )


def rings_draft(rings: list[Ring]) -> RingsDraft:
    if not rings or len(rings) > MAX_RINGS_GIVEN:
        raise ControllerError(f"rings: 1 to {MAX_RINGS_GIVEN}, one for each stage")
    drafted = [
        DraftRing(None if r.audience.strip() == EVERYONE else _parsed(r.audience), r.percent)
        for r in rings
    ]
    reviewed = review_rings(drafted, None, None)
    if isinstance(reviewed, str):
        raise ControllerError(reviewed)
    findings = [f"{f.severity}: {f.message}" for f in reviewed.findings]
    return RingsDraft(
        plan_yaml=plan_yaml(reviewed.plan, ["Rings drafted by an agent, for review."]),
        findings=findings,
        usable=not rule_errors(reviewed.findings),
    )


def _parsed(text: str) -> AudienceRule:
    try:
        return parse(text)
    except RuleSyntaxError as exc:
        raise ControllerError(f"not a rule: {exc}") from exc
