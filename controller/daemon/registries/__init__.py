"""What signed commands keep besides rollouts: the keyring, app keys and segments."""

from controller.daemon.registries.app_keys import AppKeyCommands, KeyBook
from controller.daemon.registries.keyring import KeyReloader, Keyring, Registry, registry_of
from controller.daemon.registries.segments import SegmentService

__all__ = [
    "AppKeyCommands",
    "KeyBook",
    "KeyReloader",
    "Keyring",
    "Registry",
    "SegmentService",
    "registry_of",
]
