"""Kept so that ``from controller.sdk.client import FlagClient, EventEmitter`` still works.

The app-side client now lives in :mod:`controller.sdk.flags` (flag states,
arm assignment) and :mod:`controller.sdk.events` (the event emitter); apps
import the same names from :mod:`controller.sdk`.
"""

from controller.core.flagstates import SERVES_CONTROL
from controller.lifecycle import Lifecycle, cancel
from controller.sdk.events import EventEmitter
from controller.sdk.flags import FlagBook, FlagClient

__all__ = ["SERVES_CONTROL", "EventEmitter", "FlagBook", "FlagClient", "Lifecycle", "cancel"]
