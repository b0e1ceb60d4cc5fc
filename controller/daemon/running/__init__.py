"""Running the daemon: wiring the services, connecting, supervising their tasks, closing, topics."""

from controller.daemon.running import wiring

__all__ = [
    "wiring",
]
