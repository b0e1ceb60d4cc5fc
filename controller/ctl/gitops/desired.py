"""Desired state in files: what ``rolloutctl validate|diff|apply -f DIR`` read.

A directory holds YAML or JSON files, one object each, named by ``kind:`` or
recognised by shape: plans (``stages``) and pipelines (``steps``), named by
their ``name`` so rollouts can refer to them; rollouts to run (``flag`` with
``plan`` or ``pipeline``: a name or the object itself); segments (``rule`` or
``ids_file``); app keys (``scopes``, never a secret); and the controller's own
config, roles (``roles``) and team windows (``windows``), which are validated
only: they are deployed with the controller's config. Everything here is pure
but :func:`read_directory`, which reads the files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from controller.core.common import (
    MAX_YAML_BYTES,
    ConfigError,
    EnvironmentName,
    PlainFlagKey,
    Reason,
    load_document,
)
from controller.core.release import Pipeline, RoleBook
from controller.core.rollouts import Plan
from controller.core.rollouts.windows import TeamWindows
from controller.core.trust import Scope
from controller.core.wire import summarize
from controller.ctl.operate.file_kinds import KINDS, SUFFIXES, Kind, kind_of

MAX_FILES = 1000
"""The most object files a directory may hold: a bound on what one apply reads."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RolloutFile(_File):
    """A flag's rollout to run: by a plan in one environment, or by a pipeline."""

    kind: Literal["rollout"] = "rollout"
    flag: PlainFlagKey
    environment: EnvironmentName | None = Field(
        default=None, description="With a plan: where (none: the controller's default)."
    )
    plan: Name | dict[str, Any] | None = None
    pipeline: Name | dict[str, Any] | None = None
    reason: Reason = ""

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        if (self.plan is None) == (self.pipeline is None):
            raise ValueError("a rollout names a plan or a pipeline, one of them")
        if self.pipeline is not None and self.environment is not None:
            raise ValueError("a pipeline names its environments: leave out environment")
        return self


class SegmentFile(_File):
    """A segment: a rule, or a file of unit ids (one per line, beside this file)."""

    kind: Literal["segment"] = "segment"
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    rule: Annotated[str, StringConstraints(min_length=1, max_length=65536)] | None = None
    ids_file: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    reason: Reason = ""

    @model_validator(mode="after")
    def _one_body(self) -> Self:
        if (self.rule is None) == (self.ids_file is None):
            raise ValueError("a segment has a rule or an ids_file, one of them")
        return self


class AppKeyFile(_File):
    """An app key by name and scope; its secret is drawn by apply, never written here."""

    kind: Literal["app_key"] = "app_key"
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    scopes: list[Scope] = Field(default_factory=list, max_length=len(Scope))
    client: bool = False
    environment: EnvironmentName | None = None
    reason: Reason = ""

    @model_validator(mode="after")
    def _can_do_something(self) -> Self:
        if not self.scopes and not self.client:
            raise ValueError("a key needs scopes (evaluate, events, verdicts) or client: true")
        return self


@dataclass(frozen=True)
class Desired:
    """One object the controller should hold, as ``apply`` would send it.

    ``body`` is what the object is (the digest covers kind, name and body);
    ``ids`` an id-list segment's ids, sent packed but hashed into the body.
    """

    kind: Literal["rollout", "pipeline", "segment", "app_key"]
    name: str
    body: dict[str, Any]
    source: str
    reason: str = ""
    ids: tuple[str, ...] | None = None
    rule: str | None = None
    """A rule segment's rule as written."""

    @property
    def digest(self) -> str:
        canonical = {"kind": self.kind, "name": self.name, "body": self.body}
        return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.kind.replace('_', '-')} {self.name}"


@dataclass
class DesiredState:
    """What a directory asks for, and what was wrong with it (file: why)."""

    objects: list[Desired] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    checked: dict[str, Kind] = field(default_factory=dict)
    """Each file read, and the kind it holds."""


def digest_of(data: Any) -> str:
    """SHA-256 of ``data`` as compact JSON with sorted keys."""
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _problems(exc: ValidationError) -> str:
    return summarize(exc)


def parse_files(documents: dict[str, Any], ids: dict[str, tuple[str, ...] | str]) -> DesiredState:
    """The desired state of parsed files (``documents``: file -> its object); ``ids``: the ids
    of the list each segment file names (by the segment file), or why it is unreadable."""
    state = DesiredState()
    typed = _typed(documents, state)
    plans = _named(typed, "plan", state)
    pipelines = _named(typed, "pipeline", state)
    names: dict[str, str] = {}
    for source, (kind, model) in typed.items():
        made = _desired(source, kind, model, plans=plans, pipelines=pipelines, ids=ids)
        if isinstance(made, str):
            state.problems.append(f"{source}: {made}")
        elif made is not None:
            if (seen := names.get(made.label)) is not None:
                state.problems.append(f"{source}: {made.label} is also in {seen}")
                continue
            names[made.label] = source
            state.objects.append(made)
    return state


def _typed(documents: dict[str, Any], state: DesiredState) -> dict[str, tuple[Kind, Any]]:
    typed: dict[str, tuple[Kind, Any]] = {}
    for source, data in sorted(documents.items()):
        kind = kind_of(data)
        if kind is None:
            state.problems.append(f"{source}: not an object of a kind apply knows ({_kinds()})")
            continue
        state.checked[source] = kind
        try:
            typed[source] = (kind, _model(kind, data))
        except ValidationError as exc:
            state.problems.append(f"{source}: invalid {kind.replace('_', ' ')}: {_problems(exc)}")
    return typed


def _kinds() -> str:
    return "kind: " + ", ".join(KINDS)


def _model(kind: Kind, data: dict[str, Any]) -> Any:
    body = {k: v for k, v in data.items() if k != "kind"}
    if kind not in _PLAIN:
        body["kind"] = kind  # app-key and app_key alike
    return _MODELS[kind].model_validate(body)


_MODELS: dict[Kind, type[BaseModel]] = {
    "plan": Plan,
    "pipeline": Pipeline,
    "rollout": RolloutFile,
    "segment": SegmentFile,
    "app_key": AppKeyFile,
    "roles": RoleBook,
    "windows": TeamWindows,
}
_PLAIN: frozenset[Kind] = frozenset({"plan", "pipeline", "roles", "windows"})
"""Kinds whose model is the controller's own, which knows no ``kind:``."""


def _named(typed: dict[str, tuple[Kind, Any]], kind: Kind, state: DesiredState) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for source, (each, model) in typed.items():
        if each == kind:
            if model.name in found:
                state.problems.append(f"{source}: a second {kind} named {model.name!r}")
            found[model.name] = model
    return found


def _desired(
    source: str,
    kind: Kind,
    model: Any,
    *,
    plans: dict[str, Plan],
    pipelines: dict[str, Pipeline],
    ids: dict[str, tuple[str, ...] | str],
) -> Desired | str | None:
    if isinstance(model, RolloutFile):
        return _rollout(source, model, plans, pipelines)
    if isinstance(model, SegmentFile):
        return _segment(source, model, ids)
    if isinstance(model, AppKeyFile):
        body = {"scopes": sorted(s.value for s in model.scopes), "client": model.client}
        body["environment"] = model.environment
        return Desired("app_key", model.name, body, source, model.reason)
    return None  # plans and pipelines are used by rollouts; roles and windows only checked


def _rollout(
    source: str, model: RolloutFile, plans: dict[str, Plan], pipelines: dict[str, Pipeline]
) -> Desired | str:
    if model.plan is not None:
        plan = _resolve(model.plan, plans, Plan)
        if isinstance(plan, str):
            return f"plan: {plan}"
        name = model.flag if model.environment is None else f"{model.flag}@{model.environment}"
        body = {"flag": model.flag, "environment": model.environment}
        return Desired(
            "rollout", name, body | {"plan": plan.model_dump(mode="json")}, source, model.reason
        )
    pipeline = _resolve(model.pipeline, pipelines, Pipeline)
    if isinstance(pipeline, str):
        return f"pipeline: {pipeline}"
    body = {"flag": model.flag, "pipeline": pipeline.model_dump(mode="json", exclude_defaults=True)}
    return Desired("pipeline", model.flag, body, source, model.reason)


def _resolve(given: Any, named: dict[str, Any], model: type[BaseModel]) -> Any:
    """A plan or pipeline: the one of that name in the directory, or the object given."""
    if isinstance(given, str):
        return named.get(given, f"no {model.__name__.lower()} named {given!r} in the directory")
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        return _problems(exc)


def _segment(
    source: str, model: SegmentFile, ids: dict[str, tuple[str, ...] | str]
) -> Desired | str:
    from controller.core.rules import pack  # noqa: PLC0415 - gzip only when a list is named
    from controller.ctl.operate.segments import orjson_rule  # noqa: PLC0415
    from controller.ctl.terminal import UsageError  # noqa: PLC0415

    if model.rule is not None:
        try:
            rule = orjson_rule(model.rule)
        except UsageError as exc:
            return str(exc)
        body = {"rule": rule}
        return Desired("segment", model.name, body, source, model.reason, rule=model.rule)
    listed = ids.get(source, "not read")
    if isinstance(listed, str):
        return f"ids_file {model.ids_file}: {listed}"
    try:
        packed = pack(list(listed))
    except ValueError as exc:
        return f"ids_file {model.ids_file}: {exc}"
    if not packed.parts:
        return f"ids_file {model.ids_file}: holds no ids"
    body = {"ids": {"count": packed.count, "sha256": packed.sha256}}
    return Desired("segment", model.name, body, source, model.reason, ids=tuple(listed))


# -- reading a directory ----------------------------------------------------------------------


def read_directory(root: Path) -> DesiredState:
    """Every object file under ``root`` (hidden files and folders skipped), and the ids files
    its segments name; unreadable files are problems, not exceptions."""
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory")
    paths = sorted(p for p in root.rglob("*") if _object_file(p, root))
    if len(paths) > MAX_FILES:
        raise ConfigError(f"{root}: {len(paths)} files, more than {MAX_FILES}")
    documents: dict[str, Any] = {}
    problems: list[str] = []
    for path in paths:
        source = str(path.relative_to(root))
        try:
            documents[source] = load_document(_text(path), source=source, name=path.name)
        except ConfigError as exc:
            problems.append(str(exc))
    state = parse_files(documents, _ids_files(root, documents))
    state.problems[:0] = problems
    return state


def _object_file(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return path.suffix in SUFFIXES and path.is_file() and not any(p.startswith(".") for p in parts)


def _text(path: Path) -> str:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise ConfigError(f"{path.name}: more than {MAX_YAML_BYTES} bytes")
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path.name}: {exc}") from exc


def _ids_files(root: Path, documents: dict[str, Any]) -> dict[str, tuple[str, ...] | str]:
    from controller.ctl.operate.segments import read_ids  # noqa: PLC0415
    from controller.ctl.terminal import UsageError  # noqa: PLC0415

    found: dict[str, tuple[str, ...] | str] = {}
    for source, data in documents.items():
        named = data.get("ids_file") if isinstance(data, dict) else None
        if not isinstance(named, str):
            continue
        path = (root / source).parent / named
        if root.resolve() not in path.resolve().parents:
            found[source] = "outside the directory"
            continue
        try:
            found[source] = tuple(read_ids(path))
        except (OSError, UsageError) as exc:
            found[source] = str(exc)
    return found
