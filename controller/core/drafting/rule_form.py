"""A flat form of audience rules a model can be held to: one list of conditions, all or any.

A model writing the text form free-hand rarely gets the grammar right, and
the wire's JSON form (``schemas/audience.schema.json``) is recursive, with
bounds a server's grammar converter unrolls character by character. So a
draft is asked for in this flat shape, whose JSON Schema names the
catalogue's attributes and the operators as enumerations::

    {"match": "all",
     "conditions": [{"attribute": "country", "op": "==", "value": "TH"},
                    {"attribute": "user_id", "op": "in segment", "value": "beta"}]}

:func:`draft_schema` builds that schema; :func:`from_form` turns a reply into
an :class:`~controller.core.rules.audience.AudienceRule` (a version or date
attribute's string becomes ``semver(…)`` or ``date(…)`` as the catalogue
says), or says why it cannot. Every bound of the rule model still applies.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from controller.core.drafting.rule_lint import Catalogue
from controller.core.rules import AudienceRule

SEGMENT_OPS = {"in segment": "in", "not in segment": "not in"}
FORM_OPS: tuple[str, ...] = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")
FORM_OPS += ("starts_with", "ends_with", "contains", *SEGMENT_OPS)
_WRAPPED = {"semver": "semver", "date": "date"}
"""Catalogue types whose values the form gives as plain strings."""


def draft_schema(catalogue: Catalogue | None) -> dict[str, Any]:
    """The flat form's JSON Schema; attribute names enumerated when there is a catalogue."""
    attribute: dict[str, Any] = {"type": "string"}
    if catalogue is not None and catalogue.attributes:
        attribute = {"type": "string", "enum": sorted(catalogue.attributes)}
    scalar = [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]
    lists = [{"type": "array", "items": {"type": kind}} for kind in ("string", "number")]
    condition = {
        "type": "object",
        "properties": {
            "attribute": attribute,
            "op": {"type": "string", "enum": list(FORM_OPS)},
            "value": {"anyOf": scalar + lists},
        },
        "required": ["attribute", "op", "value"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "match": {"type": "string", "enum": ["all", "any"]},
            "conditions": {"type": "array", "items": condition, "minItems": 1},
        },
        "required": ["match", "conditions"],
        "additionalProperties": False,
    }


def is_form(data: object) -> bool:
    return isinstance(data, dict) and "conditions" in data and "match" in data


def from_form(data: dict[str, Any], catalogue: Catalogue | None) -> AudienceRule | str:
    """The rule a flat-form reply says, or why it says none (no reply text in it)."""
    parts = data.get("conditions")
    if not isinstance(parts, list) or not parts or data.get("match") not in ("all", "any"):
        return "the draft needs match all or any, and a list of conditions"
    leaves: list[object] = []
    for n, part in enumerate(parts):
        leaf = _condition(part, catalogue)
        if isinstance(leaf, str):
            return f"condition {n + 1}: {leaf}"
        leaves.append(leaf)
    tree = leaves[0] if len(leaves) == 1 else {"and" if data["match"] == "all" else "or": leaves}
    try:
        return AudienceRule.model_validate(tree)
    except ValidationError as exc:
        found = exc.errors()
        # Of a union's many complaints, a validator's own says the most.
        told = next((e for e in found if e["type"] == "value_error"), found[0])
        return f"not a valid rule: {told['msg']}"


def _condition(part: object, catalogue: Catalogue | None) -> dict[str, Any] | str:
    if not isinstance(part, dict) or set(part) != {"attribute", "op", "value"}:
        return "not an object of attribute, op and value"
    op, value = part["op"], part["value"]
    if not isinstance(op, str) or not isinstance(part["attribute"], str):
        return "attribute and op are strings"  # a list or object here is no key to look up
    if op in SEGMENT_OPS:
        if not isinstance(value, str):
            return "a segment is named by a string"
        return {"attribute": part["attribute"], "op": SEGMENT_OPS[op], "value": {"segment": value}}
    declared = None if catalogue is None else catalogue.attributes.get(str(part["attribute"]))
    if declared in _WRAPPED and isinstance(value, str):
        value = {_WRAPPED[declared]: value}
    return {"attribute": part["attribute"], "op": op, "value": value}
