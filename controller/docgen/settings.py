"""The settings page: every group of :class:`controller.settings.Settings`, every field."""

from __future__ import annotations

import enum
import json
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from controller.docgen.markdown import code, page, table
from controller.settings import Settings

INTRO = (
    "Every setting of the controller, group by group, read from the models that load them. "
    "Each is set in the YAML file given with `--config` (`group: {field: value}`, as in "
    "`ops/controller.yaml`) or in the environment as `RC_<GROUP>__<FIELD>`; "
    "`KAFKA_BOOTSTRAP_SERVERS`, `REDIS_URL` and `LLM_BASE_URL` work too. "
    "The environment wins over the file. A secret's default is never shown."
)
HEADER = ("Field", "Environment", "Type", "Default", "Description")


def settings_page() -> str:
    body: list[str] = []
    top: list[list[str]] = []
    for group, info in Settings.model_fields.items():
        model = info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            top.append(_row(None, group, info))
            continue
        body += [f"## `{group}`", "", _first_paragraph(model.__doc__), ""]
        rows = [_row(group, name, field) for name, field in model.model_fields.items()]
        body += [*table(HEADER, rows), ""]
    if top:
        body += ["## Top level", "", "Settings of no group.", "", *table(HEADER, top), ""]
    return page("Settings", INTRO, body)


def _row(group: str | None, name: str, field: FieldInfo) -> list[str]:
    variable = (f"RC_{group}__{name}" if group else f"RC_{name}").upper()
    return [
        code(name),
        code(variable),
        code(type_text(field.annotation)),
        _default(field),
        field.description or "",
    ]


def _first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def type_text(annotation: Any) -> str:
    """An annotation as a reader writes it: ``int``, ``str | None``, ``"SSL" | "PLAINTEXT"``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin in (Union, types.UnionType):
        return " | ".join(type_text(arg) for arg in args)
    if origin is Literal:
        return " | ".join(json.dumps(_plain(arg)) for arg in args)
    if origin is Annotated:
        return type_text(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_text(arg) for arg in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, SecretStr):
        return "(secret)"
    return code(json.dumps(_plain(value), default=str, ensure_ascii=False))


def _plain(value: Any) -> Any:
    """A default as the YAML/JSON a config file would hold."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (frozenset, set, tuple)):
        return sorted(value, key=str) if isinstance(value, (frozenset, set)) else list(value)
    return value
