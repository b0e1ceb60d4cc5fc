"""Reading a JSON document the process built (a gate's evidence, an alert's details)."""

from __future__ import annotations

from typing import Any

from controller.core.common import JsonValue


def as_read(document: JsonValue) -> Any:
    """``document`` as a reader of the published message holds it: untyped JSON, as
    ``orjson.loads`` answers it, for a test to index into and compare."""
    return document
