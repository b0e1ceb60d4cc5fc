"""Kept so that ``from controller.client import FlagClient, EventEmitter`` still works.

New code imports the same names from :mod:`controller.sdk`.
"""

from controller.sdk.client import EventEmitter, FlagClient

__all__ = ["EventEmitter", "FlagClient"]
