"""What signed commands keep besides rollouts: the keyring, app keys and segments.

Whether the keys in use would admit a set of signed commands (:mod:`.command_check`).

And the flags as OpenTelemetry's evaluations are translated against them (:mod:`.flag_directory`).
"""

from controller.daemon.registries.app_keys import AppKeyCommands, KeyBook
from controller.daemon.registries.command_check import Held, check_commands
from controller.daemon.registries.flag_directory import FlagDirectory
from controller.daemon.registries.keyring import (
    KeyReloader,
    Keyring,
    Registry,
    registry_of,
    shared_refusal,
)
from controller.daemon.registries.segments import SegmentService

__all__ = [
    "AppKeyCommands",
    "FlagDirectory",
    "Held",
    "KeyBook",
    "KeyReloader",
    "Keyring",
    "Registry",
    "SegmentService",
    "check_commands",
    "registry_of",
    "shared_refusal",
]
