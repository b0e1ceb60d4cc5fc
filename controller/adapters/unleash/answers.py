"""What Unleash's admin API answers, read at the edge.

Answers are parsed with bounded pydantic models that read only what decides
who is served; an answer that is not the JSON the API documents (a login
proxy's HTML page with status 200, a wrong shape) is :class:`Unreadable`,
never a reading of "nothing served" that the sync would take for a person's
change. :class:`BackendUnavailable` is every failure the sync retries.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from controller.core.common import ControllerError
from controller.core.serving import (
    Dependency,
    Serving,
    Strategy,
    Target,
    constraint_of,
    would_serve,
)

_Text = Annotated[str, Field(max_length=1000)]
_Param = Annotated[str, Field(max_length=65_536)]
"""A parameter's value: a targeted rollout's audience and rings are up to 16 KiB of JSON."""


class BackendUnavailable(ControllerError):
    """Unleash did not answer, or answered that it cannot serve now; the cause is named.

    ``cause`` sorts it for the metrics: ``deadline`` (no whole answer in
    time), ``unreadable``, ``connection`` or ``refused`` (a status).
    """

    retriable = True
    cause = "refused"

    def __init__(self, message: str, *, cause: str | None = None) -> None:
        super().__init__(message)
        if cause is not None:
            self.cause = cause


class Unreadable(BackendUnavailable):
    """Something answered, but not with what Unleash's API documents (a proxy, a wrong shape)."""

    cause = "unreadable"


# -- what Unleash answers, bounded ------------------------------------------------------


class _Bounded(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class StrategyDoc(_Bounded):
    """One strategy of an environment; only what decides who is served is read."""

    name: _Text
    id: _Text | None = None
    parameters: dict[_Text, _Param | int | float | bool | None] = Field(
        default_factory=dict, max_length=100
    )
    constraints: list[Any] = Field(default_factory=list, max_length=1000)
    segments: list[Any] = Field(default_factory=list, max_length=1000)
    disabled: StrictBool | None = None

    def strategy(self) -> Strategy:
        parameters = {
            key: value if isinstance(value, str) else str(value)
            for key, value in self.parameters.items()
            if value is not None
        }
        return Strategy(
            name=self.name,
            id=self.id or None,
            parameters=parameters,
            constraints=len(self.constraints),
            segments=len(self.segments),
            disabled=self.disabled is True,
            rules=tuple(constraint_of(c) for c in self.constraints),
        )


class EnvironmentDoc(_Bounded):
    """The environment the rollout is served in."""

    name: _Text
    enabled: StrictBool
    strategies: list[StrategyDoc] = Field(default_factory=list, max_length=1000)


class DependencyDoc(_Bounded):
    """One of the feature's dependencies on a parent feature (the same in every environment)."""

    feature: _Text
    enabled: StrictBool = True
    variants: list[_Text] | None = Field(default=None, max_length=1000)

    def dependency(self) -> Dependency:
        variants = tuple(sorted(self.variants or ())) if self.enabled else ()
        return Dependency(feature=self.feature, enabled=self.enabled, variants=variants)


class FeatureDoc(_Bounded):
    """A feature as ``GET .../features/{name}`` answers it: every environment of its project,
    and its dependencies."""

    name: _Text
    environments: list[dict[_Text, Any]] = Field(max_length=100)
    dependencies: list[DependencyDoc] = Field(default_factory=list, max_length=1000)


def parse_feature(body: Any, target: Target) -> Serving:
    """What the target environment of a feature document would serve.

    :class:`Unreadable` if the document does not have the documented shape;
    an environment the feature does not list serves nothing.
    """
    try:
        feature = FeatureDoc.model_validate(body)
        env = next((e for e in feature.environments if e.get("name") == target.environment), None)
        dependencies = tuple(sorted(d.dependency() for d in feature.dependencies))
        if env is None:
            return Serving(enabled=False, dependencies=dependencies)
        doc = EnvironmentDoc.model_validate(env)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Unreadable(
            f"Unleash's feature {target.feature[:100]} is not a feature document:"
            f" {where}: {first['msg']}"[:300]
        ) from exc
    served = would_serve(doc.enabled, [s.strategy() for s in doc.strategies], target)
    return replace(served, dependencies=dependencies)


class EnvironmentEntry(_Bounded):
    """One environment as ``GET /api/admin/environments`` lists it."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    enabled: StrictBool


class EnvironmentsDoc(_Bounded):
    """The server's environments (open-source Unleash: ``development`` and ``production``,
    and a ``default`` it keeps disabled)."""

    environments: list[EnvironmentEntry] = Field(max_length=100)


def parse_environments(body: Any) -> frozenset[str]:
    """The names of the environments the server has enabled: a disabled one serves no SDK.

    :class:`Unreadable`, naming the field, if the answer is not the documented list.
    """
    try:
        doc = EnvironmentsDoc.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the answer"
        raise Unreadable(
            f"Unleash's environments are not a list of environments: {where}: {first['msg']}"[:300]
        ) from exc
    return frozenset(e.name for e in doc.environments if e.enabled)
