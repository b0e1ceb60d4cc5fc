"""The HTTP side: endpoints, console, status, event and monitor intake, readiness, reads."""
