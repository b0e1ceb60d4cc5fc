"""A pipeline read and checked against the controller: environments, roles, Unleash.

:func:`parse_pipeline` validates a pipeline (from YAML a person wrote, or a
command's JSON) and refuses, each with the field named, what the pipeline
cannot know by itself: an environment this controller does not serve, an
approval role no key can hold, and a step served by Unleash in an
environment the Unleash server does not have (open-source unleash-server
has exactly ``development`` and ``production``); :func:`window_problems`
names a step's release windows that never open again. Pure: the caller reads
which environments the Unleash server has, and the clock.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from controller.core.common import ConfigError, load_document
from controller.core.release.environments import Environments
from controller.core.release.pipeline import Pipeline
from controller.core.release.roles import RoleBook
from controller.core.rollouts import window_findings


def parse_pipeline(
    data: Any,
    *,
    environments: Environments,
    roles: RoleBook | None = None,
    unleash_environments: Collection[str] | None = None,
    source: str = "pipeline",
) -> Pipeline:
    """The pipeline in ``data``; :class:`ConfigError` names each offending field.

    ``roles`` (when given) must define every approval role; ``unleash_environments``
    (when given) must hold the Unleash environment of every step served by Unleash.
    """
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {source}: {_problems(exc)}") from exc
    problems = [
        *environment_problems(pipeline, environments),
        *(role_problems(pipeline, roles) if roles is not None else []),
        *(
            unleash_problems(pipeline, unleash_environments)
            if unleash_environments is not None
            else []
        ),
    ]
    if problems:
        raise ConfigError(f"invalid {source}: {'; '.join(problems)}")
    return pipeline


def load_pipeline(
    text: str,
    *,
    environments: Environments,
    roles: RoleBook | None = None,
    source: str = "pipeline",
    name: str = "",
) -> Pipeline:
    """A pipeline from YAML text (JSON where ``name`` ends in ``.json``), checked as
    :func:`parse_pipeline` checks it."""
    data = load_document(text, source=source, name=name)
    return parse_pipeline(data, environments=environments, roles=roles, source=source)


def _problems(exc: ValidationError) -> str:
    return "; ".join(_problem(e["loc"], e["msg"]) for e in exc.errors())


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """``field: why``; the pipeline's own checks name their field in the message."""
    why = message.removeprefix("Value error, ")
    return f"{'.'.join(str(p) for p in loc)}: {why}" if loc else why


def environment_problems(pipeline: Pipeline, environments: Environments) -> list[str]:
    """Each step whose environment the controller does not serve."""
    return [
        f"steps.{i}.environment: {why}"
        for i, step in enumerate(pipeline.steps)
        if (why := environments.unknown(step.environment)) is not None
    ]


def role_problems(pipeline: Pipeline, roles: RoleBook) -> list[str]:
    """Each approval role the book does not define."""
    return [
        f"steps.{i}.approval.needs.{j}.role: unknown role {rule.role!r}"
        for i, step in enumerate(pipeline.steps)
        if step.approval is not None
        for j, rule in enumerate(step.approval.needs)
        if roles.role(rule.role) is None
    ]


def window_problems(pipeline: Pipeline, now: datetime) -> list[str]:
    """Each step's release windows that never open again from ``now``, by their field:
    the step would wait forever for a window to start in (see
    :func:`~controller.core.rollouts.planlint.window_findings`)."""
    return [
        f"steps.{i}.{finding.field}: {finding.message}"
        for i, step in enumerate(pipeline.steps)
        for finding in window_findings(step.windows, now)
    ]


def unleash_problems(pipeline: Pipeline, unleash_environments: Collection[str]) -> list[str]:
    """Each step served by Unleash in an environment the Unleash server does not have.

    A step's Unleash environment is its plan's ``backend.unleash.environment``,
    else the step's own environment name.
    """
    problems = []
    have = ", ".join(sorted(unleash_environments)) or "none"
    for i, step in enumerate(pipeline.steps):
        target = pipeline.plan_for(step.environment).unleash
        if target is None:
            continue
        wanted = target.environment or step.environment
        if wanted not in unleash_environments:
            problems.append(
                f"steps.{i}.environment: Unleash has no environment {wanted!r} (it has {have})"
            )
    return problems
