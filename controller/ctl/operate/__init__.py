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
    views,
)
from controller.ctl.operate.commands import (
    build_command,
    send_command,
    signed_command,
    write_private_key,
)
from controller.ctl.operate.segments import commands_for, send, signer

__all__ = [
    "app_keys",
    "build_command",
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
    "views",
    "write_private_key",
]
