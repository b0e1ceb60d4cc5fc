"""What apps import: flag states, arm assignment and event emission; nothing of the daemon.

The public names::

    from controller.sdk import FlagClient, FlagPoller, EventEmitter, Flags, SyncFlags, assign, Arm

``FlagClient`` follows the compacted flag-state topic, ``FlagPoller`` polls
the daemon's ``/flags`` over HTTP, and ``EventEmitter`` publishes exposures,
request outcomes and conversions without ever blocking the caller.
``Flags`` holds a flag source and an emitter for asyncio apps, ``SyncFlags``
runs them on a background thread for apps without an event loop; both offer
``measure()``. The OpenFeature provider is in :mod:`controller.sdk.openfeature`
(it needs the ``openfeature`` extra).
"""

from controller.core.wire import Arm, assign
from controller.sdk.events import EventEmitter
from controller.sdk.flags import FlagClient
from controller.sdk.measure import Flags, Measurement
from controller.sdk.poller import FlagPoller
from controller.sdk.sync import SyncFlags

__all__ = [
    "Arm",
    "EventEmitter",
    "FlagClient",
    "FlagPoller",
    "Flags",
    "Measurement",
    "SyncFlags",
    "assign",
]
