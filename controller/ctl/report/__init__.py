"""The rollout report: model, cells, stages, moves, rendering, narrative, diagnosis."""

from controller.ctl.report import diagnosis, render, report, reporting

__all__ = [
    "diagnosis",
    "render",
    "report",
    "reporting",
]
