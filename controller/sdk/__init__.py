"""What apps import: flag states, arm assignment and event emission; nothing of the daemon.

The public names::

    from controller.sdk import FlagClient, FlagPoller, EventEmitter, assign, Arm

``FlagClient`` follows the compacted flag-state topic, ``FlagPoller`` polls
the daemon's ``/flags`` over HTTP, and ``EventEmitter`` publishes exposures,
request outcomes and conversions without ever blocking the caller.
"""

from controller.core.bucketing import assign
from controller.core.messages import Arm
from controller.sdk.events import EventEmitter
from controller.sdk.flags import FlagClient
from controller.sdk.poller import FlagPoller

__all__ = ["Arm", "EventEmitter", "FlagClient", "FlagPoller", "assign"]
