"""The messages page: each JSON Schema of ``schemas/`` with its title, description and fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from controller.docgen.markdown import code, page, table

INTRO = (
    "The wire contracts, one section per JSON Schema in `schemas/` (exported from the models "
    "by `rollout-controller schemas export`; `schemas/asyncapi.yaml` maps them onto the "
    "topics). A field in bold is required."
)


def messages_page(schemas: Path) -> str:
    body: list[str] = []
    for path in sorted(schemas.glob("*.schema.json")):
        schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        body += [f"## {schema.get('title', path.stem)}", "", f"`schemas/{path.name}`", ""]
        body += _described(schema)
        body += _fields(schema)
        for name, part in sorted(schema.get("$defs", {}).items()):
            if "properties" in part:
                body += [f"### {part.get('title', name)}", "", *_described(part), *_fields(part)]
    return page("Messages", INTRO, body)


def _described(schema: dict[str, Any]) -> list[str]:
    text = " ".join(str(schema.get("description", "")).split())
    return [text, ""] if text else []


def _fields(schema: dict[str, Any]) -> list[str]:
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        variants = [type_text(part) for part in schema.get("oneOf", schema.get("anyOf", []))]
        return [f"One of: {', '.join(variants)}.", ""] if variants else []
    required = set(schema.get("required", []))
    rows = [
        [
            f"**{code(name)}**" if name in required else code(name),
            code(type_text(field)),
            " ".join(str(field.get("description", "")).split()),
        ]
        for name, field in properties.items()
    ]
    return [*table(("Field", "Type", "Description"), rows), ""]


def type_text(field: dict[str, Any]) -> str:
    """A schema's type in a few words: ``string``, ``integer or null``, ``array of Arm``."""
    if "$ref" in field:
        return str(field["$ref"]).rsplit("/", 1)[-1]
    if "const" in field:
        return json.dumps(field["const"])
    if "enum" in field:
        return " | ".join(json.dumps(value) for value in field["enum"])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in field:
            return " or ".join(type_text(part) for part in field[key])
    kind = field.get("type", "any")
    if kind == "array" and isinstance(field.get("items"), dict):
        return f"array of {type_text(field['items'])}"
    return " or ".join(kind) if isinstance(kind, list) else str(kind)
