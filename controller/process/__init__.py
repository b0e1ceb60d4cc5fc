"""What a running process needs: logs, retrying, stopping on signals, the interpreter's turns."""

from controller.process import logs
from controller.process.interpreter import favour_the_loop
from controller.process.logs import configure
from controller.process.retrying import Retry
from controller.process.stopping import stop_on_signals

__all__ = [
    "Retry",
    "configure",
    "favour_the_loop",
    "logs",
    "stop_on_signals",
]
