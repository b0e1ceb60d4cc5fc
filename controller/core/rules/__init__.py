"""Audiences and targeting rules: the rule language, matching, segments, Unleash constraints.

Shipped in the SDK wheel with wire/ and common/.
"""

from controller.core.rules.audience import (
    AllOf,
    AnyOf,
    AttributeName,
    AudienceRule,
    Condition,
    Node,
    Segment,
    SegmentName,
    children,
    conditions,
    value_kind,
)
from controller.core.rules.held_segments import MAX_HELD_SEGMENTS, NO_HELD_SEGMENTS, HeldSegments
from controller.core.rules.matching import NO_SEGMENTS, Audience, Context, SegmentLookup, Truth
from controller.core.rules.segments import (
    MAX_ID_CHARS,
    MAX_IDS,
    MAX_NAME_CHARS,
    MAX_PART_DATA_CHARS,
    MAX_PARTS,
    assemble,
    pack,
    rule_problem,
    unpack,
)
from controller.core.rules.targeting import (
    MAX_RINGS,
    Cohort,
    CompiledRings,
    Ring,
    audience_key,
    compiled,
    rings_of,
    rings_problem,
    targeting_json,
)
from controller.core.rules.text import RuleSyntaxError, parse, to_text
from controller.core.rules.unleash_constraints import MAX_CONSTRAINT_VALUES, Constraint, Term
from controller.core.rules.unleash_rules import RingStrategy, plan_problem, ring_strategies

__all__ = [
    "MAX_CONSTRAINT_VALUES",
    "MAX_HELD_SEGMENTS",
    "MAX_IDS",
    "MAX_ID_CHARS",
    "MAX_NAME_CHARS",
    "MAX_PARTS",
    "MAX_PART_DATA_CHARS",
    "MAX_RINGS",
    "NO_HELD_SEGMENTS",
    "NO_SEGMENTS",
    "AllOf",
    "AnyOf",
    "AttributeName",
    "Audience",
    "AudienceRule",
    "Cohort",
    "CompiledRings",
    "Condition",
    "Constraint",
    "Context",
    "HeldSegments",
    "Node",
    "Ring",
    "RingStrategy",
    "RuleSyntaxError",
    "Segment",
    "SegmentLookup",
    "SegmentName",
    "Term",
    "Truth",
    "assemble",
    "audience_key",
    "children",
    "compiled",
    "conditions",
    "pack",
    "parse",
    "plan_problem",
    "ring_strategies",
    "rings_of",
    "rings_problem",
    "rule_problem",
    "targeting_json",
    "to_text",
    "unpack",
    "value_kind",
]
