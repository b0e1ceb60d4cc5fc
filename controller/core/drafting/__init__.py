"""Drafting plans and rules: templates, ring and rule forms, and the lint of a drafted rule."""

from controller.core.drafting.ring_form import (
    RING_LIMITS,
    DraftRing,
    RingDraft,
    review_rings,
    rings_in,
    rings_schema,
)
from controller.core.drafting.rule_form import draft_schema, from_form, is_form
from controller.core.drafting.rule_lint import (
    Catalogue,
    Finding,
    Preview,
    errors,
    lint,
    load_catalogue,
    preview,
    preview_findings,
)
from controller.core.drafting.templates import (
    DRAFT_SCHEMA,
    FROM_MODEL,
    RISKS,
    TEMPLATES,
    Risk,
    draft_messages,
    plan_yaml,
    review,
    shape_problem,
)

__all__ = [
    "DRAFT_SCHEMA",
    "FROM_MODEL",
    "RING_LIMITS",
    "RISKS",
    "TEMPLATES",
    "Catalogue",
    "DraftRing",
    "Finding",
    "Preview",
    "RingDraft",
    "Risk",
    "draft_messages",
    "draft_schema",
    "errors",
    "from_form",
    "is_form",
    "lint",
    "load_catalogue",
    "plan_yaml",
    "preview",
    "preview_findings",
    "review",
    "review_rings",
    "rings_in",
    "rings_schema",
    "shape_problem",
]
