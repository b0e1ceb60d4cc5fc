"""Desired state in files: what ``rolloutctl validate|diff|apply -f DIR`` read.

A directory holds YAML or JSON files, one object each, named by ``kind:`` or
recognised by shape: plans (``stages``) and pipelines (``steps``), named by
their ``name`` so rollouts can refer to them; rollouts to run (``flag`` with
``plan`` or ``pipeline``: a name or the object itself); segments (``rule`` or
``ids_file``); app keys (``scopes``, never a secret); and the controller's own
config, roles (``roles``) and team windows (``windows``), which are validated
only: they are deployed with the controller's config. Pure: the files are read
by :mod:`controller.ctl.gitops.reading`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal, Self, TypeVar

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
    EnvironmentName,
    PlainFlagKey,
    Reason,
)
from controller.core.release import Pipeline, RoleBook
from controller.core.rollouts import Plan, TeamWindows, errors, lint
from controller.core.rules import AudienceRule
from controller.core.serving import dependency_problems
from controller.core.trust import Scope
from controller.core.wire import Holdout, graph_problems, holdout_conflicts
from controller.ctl.operate import KINDS, Kind, UsageError, kind_of, orjson_rule

_Named = TypeVar("_Named", Plan, Pipeline)


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
    plan: Name | Plan | None = Field(default=None, description="A plan's name, or the plan.")
    pipeline: Name | Pipeline | None = Field(
        default=None, description="A pipeline's name, or the pipeline."
    )
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


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RolloutBody(_Body):
    flag: str
    environment: str | None
    plan: Plan


class PipelineBody(_Body):
    flag: str
    pipeline: Pipeline


class SegmentBody(_Body):
    """A rule, or an id list by its size and hash."""

    rule: AudienceRule | None = None
    count: int | None = None
    sha256: str | None = None


class AppKeyBody(_Body):
    scopes: tuple[str, ...]
    client: bool
    environment: str | None


Body = RolloutBody | PipelineBody | SegmentBody | AppKeyBody


@dataclass(frozen=True)
class Desired:
    """One object the controller should hold, as ``apply`` would send it.

    ``body`` is what the object is (the digest covers kind, name and body);
    ``ids`` an id-list segment's ids, sent packed but hashed into the body.
    """

    kind: Literal["rollout", "pipeline", "segment", "app_key"]
    name: str
    body: Body
    source: str
    reason: str = ""
    ids: tuple[str, ...] | None = None
    rule: str | None = None
    """A rule segment's rule as written."""

    @property
    def digest(self) -> str:
        # Defaults left out: a field a later version adds, at its default, changes no digest.
        body = self.body.model_dump(mode="json", exclude_defaults=True)
        canonical = {"kind": self.kind, "name": self.name, "body": body}
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


def _problems(exc: ValidationError) -> str:
    """``field: why`` for each error; a model's own check names no field."""
    said = []
    for error in exc.errors():
        why = str(error["msg"]).removeprefix("Value error, ")
        where = ".".join(str(p) for p in error["loc"])
        said.append(f"{where}: {why}" if where else why)
    return "; ".join(said)


def parse_files(
    documents: dict[str, object],
    ids: dict[str, tuple[str, ...] | str],
    now: datetime | None = None,
) -> DesiredState:
    """The desired state of parsed files (``documents``: file -> its object); ``ids``: the ids
    of the list each segment file names (by the segment file), or why it is unreadable."""
    state = DesiredState()
    typed = _typed(documents, state)
    plans = _named(typed, Plan, state)
    pipelines = _named(typed, Pipeline, state)
    if now is not None:
        state.problems += _cannot_work(typed, now)
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
    state.problems += prerequisite_problems(state.objects)
    state.problems += holdout_problems(state.objects)
    return state


def prerequisite_problems(objects: list[Desired]) -> list[str]:
    """Each environment's prerequisites checked as the controller checks a start: each
    flag a rollout requires is rolled out there by the directory too, no cycle or chain
    too deep, nothing Unleash's dependent features cannot express. Rollouts without an
    environment are the default environment's."""
    graphs: dict[str, dict[str, Plan]] = {}
    for made in objects:
        for environment, plan in _plans_of(made.body):
            graphs.setdefault(environment, {})[_flag_of(made.body)] = plan
    return [
        f"prerequisites in {where}: {problem}"
        for where, plans in sorted(graphs.items())
        for problem in graph_problems(
            {f: [n.flag for n in p.requires or ()] for f, p in plans.items()}
        )
        or dependency_problems(plans)
    ]


def holdout_problems(objects: list[Desired]) -> list[str]:
    """Each environment's holdouts checked as the controller checks a start: every rollout
    naming a holdout gives it the same percent."""
    named: dict[str, dict[str, Holdout | None]] = {}
    for made in objects:
        for environment, plan in _plans_of(made.body):
            named.setdefault(environment, {})[_flag_of(made.body)] = plan.holdout
    return [
        f"holdouts in {where}: {problem}"
        for where, flags in sorted(named.items())
        for problem in holdout_conflicts(flags)
    ]


def _plans_of(body: Body) -> list[tuple[str, Plan]]:
    if isinstance(body, RolloutBody):
        return [(body.environment or "the default environment", body.plan)]
    if isinstance(body, PipelineBody):
        return [(each, body.pipeline.plan_for(each)) for each in body.pipeline.environments]
    return []


def _flag_of(body: Body) -> str:
    return body.flag if isinstance(body, RolloutBody | PipelineBody) else ""


def _typed(documents: dict[str, object], state: DesiredState) -> dict[str, tuple[Kind, BaseModel]]:
    typed: dict[str, tuple[Kind, BaseModel]] = {}
    for source, data in sorted(documents.items()):
        kind = kind_of(data)
        if kind is None or not isinstance(data, dict):
            state.problems.append(f"{source}: not an object of a kind apply knows ({_kinds()})")
            continue
        state.checked[source] = kind
        try:
            typed[source] = (kind, _model(kind, data))
        except ValidationError as exc:
            state.problems.append(f"{source}: invalid {kind.replace('_', ' ')}: {_problems(exc)}")
    return typed


def _cannot_work(typed: dict[str, tuple[Kind, BaseModel]], now: datetime) -> list[str]:
    """Each plan that cannot work at ``now`` (an error of the plan's lint), by its file;
    the controller refuses a start with it, so it is refused here first."""
    problems = []
    for source, (_, model) in typed.items():
        plans = [model] if isinstance(model, Plan) else []
        if isinstance(model, RolloutFile) and isinstance(model.plan, Plan):
            plans = [model.plan]
        if isinstance(model, Pipeline):
            plans = [model.plan_for(environment) for environment in model.environments]
        wrong = [str(finding) for plan in plans for finding in errors(lint(plan, now))]
        problems += [f"{source}: cannot work: {'; '.join(wrong)}"] if wrong else []
    return problems


def _kinds() -> str:
    return "kind: " + ", ".join(KINDS)


def _model(kind: Kind, data: dict[str, object]) -> BaseModel:
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


def _named(
    typed: dict[str, tuple[Kind, BaseModel]], model: type[_Named], state: DesiredState
) -> dict[str, _Named]:
    found: dict[str, _Named] = {}
    for source, (_, each) in typed.items():
        if isinstance(each, model):
            if each.name in found:
                state.problems.append(
                    f"{source}: a second {model.__name__.lower()} named {each.name!r}"
                )
            found[each.name] = each
    return found


def _desired(
    source: str,
    kind: Kind,
    model: BaseModel,
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
        scopes = tuple(sorted(s.value for s in model.scopes))
        body = AppKeyBody(scopes=scopes, client=model.client, environment=model.environment)
        return Desired("app_key", model.name, body, source, model.reason)
    return None  # plans and pipelines are used by rollouts; roles and windows only checked


def _rollout(
    source: str, model: RolloutFile, plans: dict[str, Plan], pipelines: dict[str, Pipeline]
) -> Desired | str:
    if model.plan is not None:
        plan = model.plan if isinstance(model.plan, Plan) else plans.get(model.plan)
        if plan is None:
            return f"plan: no plan named {model.plan!r} in the directory"
        name = model.flag if model.environment is None else f"{model.flag}@{model.environment}"
        body = RolloutBody(flag=model.flag, environment=model.environment, plan=plan)
        return Desired("rollout", name, body, source, model.reason)
    given = model.pipeline
    pipeline = given if isinstance(given, Pipeline) else pipelines.get(str(given))
    if pipeline is None:
        return f"pipeline: no pipeline named {given!r} in the directory"
    return Desired(
        "pipeline",
        model.flag,
        PipelineBody(flag=model.flag, pipeline=pipeline),
        source,
        model.reason,
    )


def _segment(
    source: str, model: SegmentFile, ids: dict[str, tuple[str, ...] | str]
) -> Desired | str:
    from controller.core.rules import pack  # noqa: PLC0415 - gzip only when a list is named

    if model.rule is not None:
        try:
            rule = orjson_rule(model.rule)
        except UsageError as exc:
            return str(exc)
        body = SegmentBody(rule=AudienceRule.model_validate(rule))
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
    body = SegmentBody(count=packed.count, sha256=packed.sha256)
    return Desired("segment", model.name, body, source, model.reason, ids=tuple(listed))
