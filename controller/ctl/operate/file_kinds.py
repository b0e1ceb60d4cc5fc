"""Which kind of object a file holds, by its ``kind:`` or its shape, and which command checks
it: a file given to the wrong command is told the one that fits."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from controller.core.common import ConfigError, load_document

Kind = Literal["plan", "pipeline", "rollout", "segment", "app_key", "roles", "windows"]
KINDS: tuple[Kind, ...] = ("plan", "pipeline", "rollout", "segment", "app_key", "roles", "windows")
SUFFIXES = frozenset({".yaml", ".yml", ".json"})
_SHAPES: tuple[tuple[str, Kind], ...] = (
    ("stages", "plan"),
    ("steps", "pipeline"),
    ("flag", "rollout"),
    ("rule", "segment"),
    ("ids_file", "segment"),
    ("scopes", "app_key"),
    ("client", "app_key"),
    ("roles", "roles"),
    ("windows", "windows"),
)

VALIDATING_COMMAND: dict[Kind, str] = {
    "plan": "rolloutctl plan validate",
    "pipeline": "rolloutctl pipeline validate",
    "rollout": "rolloutctl validate -f DIR",
    "segment": "rolloutctl validate -f DIR",
    "app_key": "rolloutctl validate -f DIR",
    "roles": "rolloutctl validate -f DIR",
    "windows": "rolloutctl validate -f DIR",
}
"""The command that checks each kind of file."""


def kind_of(data: object) -> Kind | None:
    """The kind of one file's object: its ``kind:``, else its shape; None when neither says."""
    if not isinstance(data, dict):
        return None
    given = data.get("kind")
    if isinstance(given, str):
        return next((k for k in KINDS if k == given.replace("-", "_")), None)
    return next((kind for key, kind in _SHAPES if key in data), None)


def wrong_file(data: object, expected: Kind) -> str | None:
    """A pointer to the command that fits, for a file that holds another kind than expected."""
    found = kind_of(data)
    if found is None or found == expected:
        return None
    return f"this is a {found.replace('_', ' ')} file: use `{VALIDATING_COMMAND[found]}`"


def hint_for(path: Path, expected: Kind) -> str | None:
    """:func:`wrong_file` for the file at ``path``; None when it cannot be read or parsed."""
    try:
        data = load_document(path.read_text(encoding="utf-8"), source=str(path), name=path.name)
    except (OSError, UnicodeDecodeError, ConfigError):
        return None
    return wrong_file(data, expected)
