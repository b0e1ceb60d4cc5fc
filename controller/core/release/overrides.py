"""Per-environment overrides of a pipeline's plan: top-level plan fields, replaced whole.

An override names fields of a plan (``stages``, ``guardrails``, ``watch``,
``windows``, ...) and their values for one environment; the environment's
plan is the step's plan with those fields replaced (not merged deeper: a
``stages`` override is the environment's whole list of stages), and must be
a valid plan itself. Dev might run one short stage at 100% with no watch,
production the full plan. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import Field, ValidationError

from controller.core.rollouts import Plan

PLAN_FIELDS = tuple(Plan.model_fields)

PlanOverride = Annotated[Mapping[str, object], Field(max_length=len(PLAN_FIELDS))]
"""Top-level plan fields and their values for one environment (checked by :func:`apply`)."""


def apply(plan: Plan, override: Mapping[str, object]) -> Plan:
    """``plan`` with the override's fields replaced; ``ValueError`` naming the field."""
    for name in override:
        if name not in PLAN_FIELDS:
            raise ValueError(f"{name}: not a field of a plan")
    if not override:
        return plan
    try:
        return Plan.model_validate({**plan.model_dump(mode="json"), **override})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(plan)"
        raise ValueError(f"{where}: {_message(first['msg'])}") from None


def _message(text: str) -> str:
    """pydantic's message without its ``Value error,`` prefix."""
    return text.removeprefix("Value error, ")
