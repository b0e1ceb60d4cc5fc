"""Alerts for people: the forwarder from the alert topic to Slack, and the webhook sender."""

from controller.ctl.alerts import alerts

__all__ = [
    "alerts",
]
