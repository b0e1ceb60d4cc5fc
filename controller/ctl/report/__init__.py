"""The rollout report: model, cells, stages, moves, rendering, narrative, diagnosis."""

from controller.ctl.report import (
    audit_export,
    render,
    report,
    reporting,
    rollout_traffic,
)

__all__ = [
    "audit_export",
    "render",
    "report",
    "reporting",
    "rollout_traffic",
]
