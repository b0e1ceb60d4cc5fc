"""Operating rollouts: signed commands, status reads, segments, app keys and pipelines."""

from controller.ctl.operate import (
    app_keys,
    handlers,
    ingest,
    pipelines,
    plan_power,
    plan_queries,
    proposals,
    reads,
    segments,
    steering,
)
from controller.ctl.operate.commands import (
    command_model,
    encode_command,
    read_private_key,
    send_command,
    signed_model,
    write_private_key,
)
from controller.ctl.operate.file_kinds import KINDS, SUFFIXES, Kind, kind_of
from controller.ctl.operate.segments import commands_for, orjson_rule, read_ids, send
from controller.ctl.usage import UsageError

__all__ = [
    "KINDS",
    "SUFFIXES",
    "Kind",
    "UsageError",
    "app_keys",
    "command_model",
    "commands_for",
    "encode_command",
    "handlers",
    "ingest",
    "kind_of",
    "orjson_rule",
    "pipelines",
    "plan_power",
    "plan_queries",
    "proposals",
    "read_ids",
    "read_private_key",
    "reads",
    "segments",
    "send",
    "send_command",
    "signed_model",
    "steering",
    "write_private_key",
]
