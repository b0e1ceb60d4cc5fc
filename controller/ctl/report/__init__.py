"""The rollout report: model, cells, stages, moves, rendering, narrative, diagnosis."""

from controller.ctl.report import diagnosis, reporting

__all__ = [
    "diagnosis",
    "reporting",
]
