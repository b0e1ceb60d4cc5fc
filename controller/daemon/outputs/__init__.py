"""What leaves the daemon, and how it is written: the outbox, rendering, alarms, signed states."""

from controller.daemon.outputs.alarms import Alarms
from controller.daemon.outputs.outbox import Outbox
from controller.daemon.outputs.rendering import flag_state_fields, render, render_alert
from controller.daemon.outputs.signed import (
    Publishing,
    SigningOutputs,
    load_signer,
    signed_states,
)

__all__ = [
    "Alarms",
    "Outbox",
    "Publishing",
    "SigningOutputs",
    "flag_state_fields",
    "load_signer",
    "render",
    "render_alert",
    "signed_states",
]
