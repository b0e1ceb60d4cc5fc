"""Drafting with the model: plans, targeting rules and rings, each checked before it is shown."""

from controller.ctl.drafting import drafting, rings, rules

__all__ = [
    "drafting",
    "rings",
    "rules",
]
