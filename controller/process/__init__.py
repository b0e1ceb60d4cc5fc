"""What a running process needs: log configuration, retrying with log lines, stopping on signals."""

from controller.process import logs
from controller.process.logs import configure
from controller.process.retrying import Retry
from controller.process.stopping import stop_on_signals

__all__ = [
    "Retry",
    "configure",
    "logs",
    "stop_on_signals",
]
