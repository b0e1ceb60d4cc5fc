"""Release pipelines: environments in order, each with its plan and what gates it.

A pipeline moves one flag through environments, ``dev`` then ``staging``
then ``production``. Each :class:`PipelineStep` names its environment and
its plan: one of the pipeline's named ``plans``, or the pipeline's own
``plan``, changed for that environment by its ``overrides``
(:mod:`.overrides`). What lets a step start, once the step before it has
completed, is its gate:

* ``soak``: time since the previous environment completed;
* ``approval``: N distinct operators holding a role (:mod:`.approvals`);
* ``windows``: release windows, as a plan's (:mod:`controller.core.rollouts.windows`).

The first step starts with the pipeline and has no gate. The pipeline
validates itself (each environment once: a repeat would loop back; plans
named; overrides only for its environments); what it needs from the
controller (environments served, roles, Unleash's environments) is checked
by :func:`controller.core.release.checks.parse_pipeline`. Pure.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from pydantic import Field, model_validator

from controller.core.common import ReadableDuration
from controller.core.release.approvals import ApprovalGate
from controller.core.release.environments import MAX_ENVIRONMENTS, EnvironmentName, Frozen
from controller.core.release.overrides import PlanOverride, apply
from controller.core.rollouts import Plan, Windows

MAX_PLANS = 8
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_SOAK = timedelta(days=30)

PipelineName = Annotated[str, Field(min_length=1, max_length=64, pattern=NAME_PATTERN)]
PlanName = Annotated[str, Field(min_length=1, max_length=64, pattern=NAME_PATTERN)]
Soak = Annotated[timedelta, ReadableDuration, Field(ge=timedelta(0), le=MAX_SOAK)]


class PipelineStep(Frozen):
    """One environment of the pipeline, its plan, and the gate before it starts."""

    environment: EnvironmentName
    plan: PlanName | None = Field(
        default=None, description="One of the pipeline's plans; left out: the pipeline's plan."
    )
    soak: Soak | None = Field(
        default=None, description="How long the previous environment must have completed."
    )
    approval: ApprovalGate | None = Field(
        default=None, description="Approvals from distinct operators holding a role."
    )
    windows: Windows = Field(
        default=(), description="Release windows in which this step may start (deny wins)."
    )

    @property
    def gated(self) -> bool:
        return self.soak is not None or self.approval is not None or bool(self.windows)


class Pipeline(Frozen):
    """Environments in order, each once, with their plans and gates."""

    name: PipelineName
    plans: Annotated[dict[PlanName, Plan], Field(max_length=MAX_PLANS)] = Field(
        default_factory=dict
    )
    plan: PlanName | None = Field(
        default=None, description="The plan of every step that names none."
    )
    overrides: Annotated[
        dict[EnvironmentName, PlanOverride], Field(max_length=MAX_ENVIRONMENTS)
    ] = Field(default_factory=dict)
    steps: Annotated[tuple[PipelineStep, ...], Field(min_length=1, max_length=MAX_ENVIRONMENTS)]

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        problem = _order_problem(self) or _plan_problem(self) or _override_problem(self)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def environments(self) -> tuple[str, ...]:
        return tuple(step.environment for step in self.steps)

    def index(self, environment: str) -> int | None:
        """The place of ``environment``'s step, or None when the pipeline has none."""
        envs = self.environments
        return envs.index(environment) if environment in envs else None

    def plan_name(self, environment: str) -> str:
        """Which of the plans the environment's step runs (LookupError: no such step)."""
        index = self.index(environment)
        if index is None:
            raise LookupError(f"the pipeline has no step {environment!r}")
        name = self.steps[index].plan or self.plan
        assert name is not None  # the validator guarantees every step a plan
        return name

    def plan_for(self, environment: str) -> Plan:
        """The plan the environment's rollout runs: its step's, with its overrides; served by
        Unleash, in the Unleash environment it names, else in the step's own."""
        plan = apply(self.plans[self.plan_name(environment)], self.overrides.get(environment, {}))
        target = plan.unleash
        if target is None or target.environment is not None:
            return plan
        unleash = target.model_copy(update={"environment": environment})
        backend = plan.backend.model_copy(update={"unleash": unleash}) if plan.backend else None
        return plan.model_copy(update={"backend": backend})


def _order_problem(pipeline: Pipeline) -> str | None:
    first: dict[str, int] = {}
    for i, step in enumerate(pipeline.steps):
        earlier = first.setdefault(step.environment, i)
        if earlier != i:
            return (
                f"steps.{i}.environment: {step.environment!r} already comes at steps.{earlier};"
                " a pipeline visits each environment once (it cannot loop back)"
            )
    if pipeline.steps[0].gated:
        return (
            "steps.0: the first step starts with the pipeline,"
            " so it has no soak, approval or windows"
        )
    return None


def _plan_problem(pipeline: Pipeline) -> str | None:
    known = ", ".join(pipeline.plans) or "none"
    if pipeline.plan is not None and pipeline.plan not in pipeline.plans:
        return f"plan: unknown plan {pipeline.plan!r} (plans: {known})"
    for i, step in enumerate(pipeline.steps):
        if step.plan is None and pipeline.plan is None:
            return f"steps.{i}.plan: no plan; name one of plans, or give the pipeline a plan"
        if step.plan is not None and step.plan not in pipeline.plans:
            return f"steps.{i}.plan: unknown plan {step.plan!r} (plans: {known})"
    return None


def _override_problem(pipeline: Pipeline) -> str | None:
    for environment, override in pipeline.overrides.items():
        if pipeline.index(environment) is None:
            steps = ", ".join(pipeline.environments)
            return (
                f"overrides.{environment}: environment {environment!r} is not in the pipeline"
                f" ({steps})"
            )
        try:
            apply(pipeline.plans[pipeline.plan_name(environment)], override)
        except ValueError as exc:
            return f"overrides.{environment}.{exc}"
    return None
