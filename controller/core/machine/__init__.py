"""The rollout state machine: transitions, operator commands, health, watching, the gate.

Also scheduling, waiting for windows, the advisor's opinions and broker log gaps.
"""

from controller.core.machine import commands, log_gaps
from controller.core.machine.commands import (
    MAX_CONTROL_BYTES,
    Trial,
    pipeline_refusal,
    start_problem,
    taken,
)
from controller.core.machine.final_look import held_for_advice
from controller.core.machine.gate import evaluate
from controller.core.machine.health import drift_alerted
from controller.core.machine.log_gaps import (
    CHOICES,
    Choice,
    IngestCommand,
    LogGap,
    LogIdentity,
    advice,
    gap_of,
    identity_change,
    resume_offset,
)
from controller.core.machine.machine import late_regression, passed_stages, step
from controller.core.machine.operator import applicable
from controller.core.machine.queries import (
    PlannedQuery,
    combined,
    plan_queries,
    planned_queries,
    reading_names,
    reads_source,
    split,
    stage_of,
)
from controller.core.machine.sourced import Sourced, sourced_tests
from controller.core.machine.transitions import parent_killed

__all__ = [
    "CHOICES",
    "MAX_CONTROL_BYTES",
    "Choice",
    "IngestCommand",
    "LogGap",
    "LogIdentity",
    "PlannedQuery",
    "Sourced",
    "Trial",
    "advice",
    "applicable",
    "combined",
    "commands",
    "drift_alerted",
    "evaluate",
    "gap_of",
    "held_for_advice",
    "identity_change",
    "late_regression",
    "log_gaps",
    "parent_killed",
    "passed_stages",
    "pipeline_refusal",
    "plan_queries",
    "planned_queries",
    "reading_names",
    "reads_source",
    "resume_offset",
    "sourced_tests",
    "split",
    "stage_of",
    "start_problem",
    "step",
    "taken",
]
