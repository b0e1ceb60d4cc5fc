"""Unleash as a flag platform: the admin API client and how its answers are read."""

from controller.adapters.unleash.client import UnleashAdmin

__all__ = [
    "UnleashAdmin",
]
