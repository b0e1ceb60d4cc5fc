"""Drafting plans and rules: templates, ring and rule forms, and the lint of a drafted rule.

And the commands that restore a flag to a decision, or rebuild every flag a lost store took.
"""

from controller.core.drafting.rebuild import Rebuild, TopicHistory
from controller.core.drafting.restore import (
    FlagNow,
    FlagThen,
    RestorePlan,
    RestoreRefusal,
    RestoreStep,
    SegmentState,
    plan_restore,
    segments_of,
    stage_shown,
)
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
    "FlagNow",
    "FlagThen",
    "Preview",
    "Rebuild",
    "RestorePlan",
    "RestoreRefusal",
    "RestoreStep",
    "RingDraft",
    "Risk",
    "SegmentState",
    "TopicHistory",
    "draft_messages",
    "draft_schema",
    "errors",
    "from_form",
    "is_form",
    "lint",
    "load_catalogue",
    "plan_restore",
    "plan_yaml",
    "preview",
    "preview_findings",
    "review",
    "review_rings",
    "rings_in",
    "rings_schema",
    "segments_of",
    "shape_problem",
    "stage_shown",
]
