"""Flag platforms a rollout is served by: sync, writes, their alerts, and the write slots."""

from controller.daemon.backends.environments import KnownEnvironments
from controller.daemon.backends.sync import BackendSync, NudgingOutputs

__all__ = [
    "BackendSync",
    "KnownEnvironments",
    "NudgingOutputs",
]
