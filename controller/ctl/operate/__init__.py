"""Operating rollouts: signed commands, status reads, segments, app keys and pipelines."""

from controller.ctl.operate import (
    app_keys,
    handlers,
    ingest,
    pipelines,
    plan_queries,
    proposals,
    reads,
    targeting_args,
)
from controller.ctl.operate.commands import send_command, signed_command, write_private_key
from controller.ctl.operate.segments import commands_for, send, signer

__all__ = [
    "app_keys",
    "commands_for",
    "handlers",
    "ingest",
    "pipelines",
    "plan_queries",
    "proposals",
    "reads",
    "send",
    "send_command",
    "signed_command",
    "signer",
    "targeting_args",
    "write_private_key",
]
