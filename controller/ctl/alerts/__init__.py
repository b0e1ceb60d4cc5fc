"""Alerts for people: the forwarder from the alert topic to Slack, and the webhook sender."""
