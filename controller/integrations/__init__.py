"""Payload formats of the systems the controller talks to: Slack, uptime monitors."""
