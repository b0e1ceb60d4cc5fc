"""Where the demo's screens go: a live terminal view, or plain lines for logs and pipes."""

from __future__ import annotations

from typing import Any, Protocol, Self

from rich.console import Console
from rich.live import Live

from controller.demo.screens import message_lines, render_live, status_line
from controller.demo.snapshot import DemoSnapshot

PLAIN_STATUS_EVERY_S = 5.0


class Display(Protocol):
    def show(self, snapshot: DemoSnapshot) -> None: ...
    def published(self, elapsed_s: float, message: dict[str, Any]) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> None: ...


class LiveDisplay:
    """Redraws the live view in place (``rich.live.Live``), four times a second."""

    def __init__(self, console: Console) -> None:
        self._live = Live(console=console, refresh_per_second=4, transient=False)

    def show(self, snapshot: DemoSnapshot) -> None:
        self._live.update(render_live(snapshot))

    def published(self, elapsed_s: float, message: dict[str, Any]) -> None:
        """The live view shows the latest state; single messages are in the decision log."""

    def __enter__(self) -> Self:
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.stop()


class PlainDisplay:
    """One line per decision and alert as it is published, and every flag's state every 5 s."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._next_status = 0.0

    def show(self, snapshot: DemoSnapshot) -> None:
        if snapshot.elapsed_s < self._next_status:
            return
        self._next_status = snapshot.elapsed_s + PLAIN_STATUS_EVERY_S
        for view in snapshot.flags:
            self._print(status_line(snapshot.elapsed_s, view))

    def published(self, elapsed_s: float, message: dict[str, Any]) -> None:
        for line in message_lines(elapsed_s, message):
            self._print(line)

    def _print(self, line: str) -> None:
        # Plain text as is: no markup, no highlighting, no wrapping of long lines.
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None
