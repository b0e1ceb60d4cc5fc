"""Release across environments: pipelines, their gates, approvals by several people, roles.

The pure model of #42, not yet wired into the daemon: environments, a
pipeline's steps and gates, its state machine, the approvals ledger, and
roles per operator key (docs/architecture.md, "Release pipelines (design)").
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
from controller.core.release.checks import load_pipeline, parse_pipeline
from controller.core.release.environments import (
    DEFAULT_ENVIRONMENT,
    SINGLE,
    EnvironmentName,
    Environments,
)
from controller.core.release.key_records import KeyRecord, read_key_record, unknown_roles
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
from controller.core.release.verdicts import Allowed, Refused, Verdict

__all__ = [
    "DEFAULT_ENVIRONMENT",
    "OPERATOR",
    "SINGLE",
    "Allowed",
    "Approval",
    "ApprovalGate",
    "ApprovalRule",
    "Counted",
    "EnvironmentName",
    "Environments",
    "KeyRecord",
    "KeyRoles",
    "Ledger",
    "Needed",
    "Permission",
    "Pipeline",
    "PipelineStep",
    "Refused",
    "Role",
    "RoleBook",
    "Verdict",
    "action_of",
    "approvals_needed",
    "holds",
    "load_pipeline",
    "may",
    "parse_pipeline",
    "read_key_record",
    "record",
    "revoke",
    "role_problems",
    "unknown_roles",
]
