"""Release across environments: pipelines, their gates, approvals by several people, roles.

The pure model of release pipelines: environments, a pipeline's steps and gates, its state
machine, the approvals ledger, and roles per operator key; the daemon's
pipelines part (``controller.daemon.rollouts.pipelines``) does the I/O
(docs/architecture.md, "Release pipelines").
"""

from controller.core.release.approvals import (
    Approval,
    ApprovalGate,
    ApprovalRule,
    Counted,
    Ledger,
    Needed,
    approvals_needed,
    record,
    revoke,
)
from controller.core.release.checks import (
    load_pipeline,
    parse_pipeline,
    unleash_problems,
    window_problems,
)
from controller.core.release.commands import PIPELINE_TYPE, PipelineCommand, pipeline_command
from controller.core.release.environments import (
    DEFAULT_ENVIRONMENT,
    SINGLE,
    EnvironmentName,
    Environments,
)
from controller.core.release.events import (
    Action,
    Approve,
    Decision,
    Event,
    KeyRevoked,
    LateRegression,
    RolloutEnded,
    StartRollout,
    Step,
    TimePassed,
)
from controller.core.release.gate import GateVerdict, gate, next_gate
from controller.core.release.key_records import (
    KeyRecord,
    read_key_record,
    records_of,
    registry_problems,
    unknown_roles,
)
from controller.core.release.machine import begin, step
from controller.core.release.pipeline import Pipeline, PipelineStep
from controller.core.release.roles import (
    OPERATOR,
    KeyRoles,
    Permission,
    Role,
    RoleBook,
    action_of,
    holds,
    may,
    role_problems,
)
from controller.core.release.state import (
    PipelineState,
    RunPhase,
    StepState,
    StepStatus,
    rollout_id_of,
)
from controller.core.release.verdicts import Allowed, Refused, Verdict

__all__ = [
    "DEFAULT_ENVIRONMENT",
    "OPERATOR",
    "PIPELINE_TYPE",
    "SINGLE",
    "Action",
    "Allowed",
    "Approval",
    "ApprovalGate",
    "ApprovalRule",
    "Approve",
    "Counted",
    "Decision",
    "EnvironmentName",
    "Environments",
    "Event",
    "GateVerdict",
    "KeyRecord",
    "KeyRevoked",
    "KeyRoles",
    "LateRegression",
    "Ledger",
    "Needed",
    "Permission",
    "Pipeline",
    "PipelineCommand",
    "PipelineState",
    "PipelineStep",
    "Refused",
    "Role",
    "RoleBook",
    "RolloutEnded",
    "RunPhase",
    "StartRollout",
    "Step",
    "StepState",
    "StepStatus",
    "TimePassed",
    "Verdict",
    "action_of",
    "approvals_needed",
    "begin",
    "gate",
    "holds",
    "load_pipeline",
    "may",
    "next_gate",
    "parse_pipeline",
    "pipeline_command",
    "read_key_record",
    "record",
    "records_of",
    "registry_problems",
    "revoke",
    "role_problems",
    "rollout_id_of",
    "step",
    "unknown_roles",
    "unleash_problems",
    "window_problems",
]
