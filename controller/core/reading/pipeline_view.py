"""What ``rolloutctl pipeline status`` and the console's pipeline page show: a run's
environments, what gates the next step, and who still has to approve.

:func:`pipeline_view` turns a run (and each environment's rollout, as loaded)
into a :class:`.PipelineRun`, whose JSON is the answer of ``GET /pipelines/{flag}``:
the run's phase; per environment its step's status, the key its rollout has
(``checkout@staging``), its rollout (phase, stage, percent) and how it ended, and
the gate before it (soak, approvals N of M per role, release windows); the step
that starts next with everything it still waits for (the previous environment, a
soak, approvals, a window); and per step that needs approvals, how many are
missing per role and who has approved, when. :func:`pipeline_text` writes the run as
lines of text: ``rolloutctl pipeline status``, and the pipeline part of a report across
environments. Pure: the clock is an argument.

The run is served as one typed view, :class:`PipelineRun`: the daemon serves its JSON,
and every reader (``rolloutctl pipeline status``, the console's pipeline page, the report
across environments, the MCP server, ``rolloutctl apply``) reads the same model back,
parsed once where the answer comes in. The OpenAPI document describes the answer from
these models. Closed and frozen: a field the model does not declare is refused, so an
answer of another shape is an error that says which field, never a ``KeyError`` deep in
a reader. Written as served since the first version: a step without an approval has no
``approvals`` key, and ``applied`` follows ``updated_at``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from controller.core.common import PLAIN_FLAG_KEY_PATTERN, AppliedDigest, EnvironmentName
from controller.core.reading.wording import stage_label
from controller.core.release import (
    ApprovalGate,
    PipelineState,
    RunPhase,
    StepStatus,
    approvals_needed,
    next_gate,
)
from controller.core.release import PipelineStep as PlannedStep
from controller.core.rollouts import Rollout

MAX_PLAIN_FLAG = 128


class Closed(BaseModel):
    """A part of the served run: immutable, and no field it does not declare."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class PipelineRollout(Closed):
    """The rollout an environment's step started, where it is now."""

    phase: str
    stage: int = Field(ge=0)
    stages: int = Field(ge=1)
    label: str
    percent: float = Field(ge=0, le=100)


class ApprovalGiven(Closed):
    operator: str
    key_id: str
    role: str
    at: str = Field(description="ISO 8601.")


class PipelineApprovals(Closed):
    needed: dict[str, int] = Field(description="Approvals needed, by role.")
    missing: dict[str, int] = Field(description="Approvals still missing, by role.")
    approved: dict[str, list[str]] = Field(description="Who approved, by role.")
    given: list[ApprovalGiven]
    expires_after: str
    summary: str


class PipelineStep(Closed):
    """One environment's step of the run."""

    environment: EnvironmentName
    key: str | None = Field(description="The environment's rollout key, where shown.")
    status: StepStatus
    plan: str
    rollout_id: str | None
    started_at: str | None
    ended_at: str | None
    ending: str
    rollout: PipelineRollout | None
    soak: str | None
    windows: int = Field(ge=0)
    gate: str | None = Field(description="What must hold before it starts; none for the first.")
    approvals: PipelineApprovals | None = Field(
        default=None,
        description="Absent where the step needs no approval.",
        exclude_if=lambda approvals: approvals is None,
    )


class PipelineNext(Closed):
    environment: EnvironmentName
    open: bool
    waiting_for: list[str]


class PipelineRun(Closed):
    """A flag's newest release pipeline run, as ``rolloutctl pipeline status`` shows it."""

    run_id: str
    pipeline: str
    flag: str
    phase: RunPhase
    stopped_at: EnvironmentName | None
    started_at: str = Field(description="ISO 8601.")
    updated_at: str = Field(description="ISO 8601.")
    environments: list[PipelineStep]
    next: PipelineNext | None
    applied: AppliedDigest | None = Field(
        default=None,
        description="SHA-256 of the desired object `rolloutctl apply` last sent for it; "
        "null where it was made by hand (docs/gitops.md).",
    )

    @model_serializer(mode="wrap")
    def _as_served(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Its keys in the order served since ``applied`` was added: after ``updated_at``
        (the schema, which lists the fields, keeps it last)."""
        data = handler(self)
        if not isinstance(data, dict) or not {"applied", "updated_at"} <= data.keys():
            return data
        served: dict[str, object] = {}
        for key, value in data.items():
            if key != "applied":
                served[key] = value
            if key == "updated_at":
                served["applied"] = data["applied"]
        return served

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The fields' schema in both modes: what it writes is what it reads (the serializer
        only orders the keys)."""
        if handler.mode == "serialization":
            core_schema = cast(
                "CoreSchema", {k: v for k, v in core_schema.items() if k != "serialization"}
            )
        return handler(core_schema)


def pipeline_view(
    run: PipelineState,
    rollouts: Mapping[str, Rollout | None],
    now: datetime,
    keys: Mapping[str, str] | None = None,
) -> PipelineRun:
    """The run as ``pipeline status`` shows it; ``rollouts``: each environment's rollout;
    ``keys``: each environment's rollout key (left out: none is shown)."""
    found = next_gate(run, now)
    return PipelineRun(
        run_id=run.run_id,
        pipeline=run.pipeline.name,
        flag=run.flag,
        phase=run.phase,
        stopped_at=run.stopped_at,
        started_at=run.started_at.isoformat(),
        updated_at=run.updated_at.isoformat(),
        applied=run.applied,
        environments=[
            _step(run, i, rollouts.get(s.environment), now, (keys or {}).get(s.environment))
            for i, s in enumerate(run.steps)
        ],
        next=None
        if found is None
        else PipelineNext(
            environment=found[0], open=found[1].open, waiting_for=list(found[1].waiting_for)
        ),
    )


def _step(
    run: PipelineState, index: int, rollout: Rollout | None, now: datetime, key: str | None
) -> PipelineStep:
    step, plan = run.steps[index], run.pipeline.steps[index]
    ours = rollout is not None and rollout.rollout_id == step.rollout_id
    return PipelineStep(
        environment=step.environment,
        key=key,
        status=step.status,
        plan=run.pipeline.plan_name(step.environment),
        rollout_id=step.rollout_id,
        started_at=step.started_at.isoformat() if step.started_at else None,
        ended_at=step.ended_at.isoformat() if step.ended_at else None,
        ending=step.ending,
        rollout=_rollout(rollout) if rollout is not None and ours else None,
        soak=str(plan.soak) if plan.soak is not None else None,
        windows=len(plan.windows),
        gate=gate_text(plan) if index else None,
        approvals=None
        if plan.approval is None
        else _approvals(run, step.environment, plan.approval, now),
    )


def _approvals(
    run: PipelineState, environment: str, gate: ApprovalGate, now: datetime
) -> PipelineApprovals:
    """Per role, how many approvals the step needs and still misses, and who gave them, when."""
    needed = approvals_needed(run.approvals, environment, gate, now)
    return PipelineApprovals(
        needed={rule.role: rule.count for rule in gate.needs},
        missing={**needed.missing},
        approved={role: list(names) for role, names in needed.approved.items()},
        given=[
            ApprovalGiven(operator=a.operator, key_id=a.key_id, role=a.role, at=a.at.isoformat())
            for a in run.approvals.live(environment, gate, now)
        ],
        expires_after=str(gate.expires_after),
        summary=needed.summary(),
    )


def _rollout(rollout: Rollout) -> PipelineRollout:
    stages = len(rollout.plan.stages)
    percent = rollout.plan.stages[rollout.stage].percent
    return PipelineRollout(
        phase=rollout.phase.value,
        stage=rollout.stage,
        stages=stages,
        label=stage_label(rollout.stage, stages, percent),
        percent=rollout.percent,
    )


def gate_text(step: PlannedStep) -> str:
    """What must hold before ``step`` starts, after the previous environment completed:
    ``soak 1:00:00; approvals: 2 from approver; a release window``, or ``nothing more``."""
    parts = []
    if step.soak is not None:
        parts.append(f"soak {step.soak}")
    if step.approval is not None:
        needs = ", ".join(f"{rule.count} from {rule.role}" for rule in step.approval.needs)
        parts.append(f"approvals: {needs}")
    if step.windows:
        parts.append("a release window" if len(step.windows) == 1 else "release windows")
    return "; ".join(parts) or "nothing more"


def flag_problem(flag: str) -> str | None:
    """Why ``flag`` is no flag's own key (a pipeline is a flag's, not an environment's), or
    None: at most 128 letters, digits and ``. _ : -``, beginning with a letter or digit."""
    if len(flag) > MAX_PLAIN_FLAG or not re.fullmatch(PLAIN_FLAG_KEY_PATTERN, flag):
        return (
            "flag: a flag's own key is 1 to 128 letters, digits and '. _ : -',"
            " beginning with a letter or digit"
        )
    return None


def pipeline_text(run: PipelineRun) -> str:
    """The run as lines: its phase; each environment's step, rollout, gate and approvals; and
    what the next step waits for."""
    lines = [
        f"pipeline {run.pipeline} for {run.flag} (run {run.run_id}): {run.phase}"
        + (f" at {run.stopped_at}" if run.stopped_at else "")
    ]
    for step in run.environments:
        lines.append(f"  {step.environment:<12} {step_line(step)}")
        lines.extend(f"  {'':<12} {line}" for line in approval_lines(step.approvals))
    found = run.next
    if found is not None:
        state = "may start now" if found.open else "waits for: " + "; ".join(found.waiting_for)
        lines.append(f"next: {found.environment} {state}")
    return "\n".join(lines)


def step_line(step: PipelineStep) -> str:
    """``running: rollout running at stage 1/2 (5%), serving 5%; gate: soak 1:00:00``."""
    line = str(step.status)
    rollout = step.rollout
    if rollout is not None:
        at = f" at {rollout.label}" if rollout.label else ""
        line += f": rollout {rollout.phase}{at}, serving {rollout.percent:g}%"
    if step.ending:
        line += f" ({step.ending})"
    if step.gate:
        line += f"; gate: {step.gate}"
    return line


def approval_lines(approvals: PipelineApprovals | None) -> list[str]:
    """Per role, N of M given (by whom, when), then who still has to approve."""
    if approvals is None:
        return []
    lines = []
    for role, count in approvals.needed.items():
        mine = [a for a in approvals.given if a.role == role]
        who = ", ".join(f"{a.operator} (key {a.key_id}) at {a.at}" for a in mine)
        lines.append(f"approvals {role}: {len(mine)} of {count}" + (f": {who}" if who else ""))
    missing = any(approvals.missing.values())
    lines.append(f"still to approve: {approvals.summary}" if missing else approvals.summary)
    return lines
