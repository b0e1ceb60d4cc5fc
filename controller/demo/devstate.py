"""The state of ``rollout-controller dev up``: which processes it left running, and where.

One JSON file, ``DIR/state.json``, written once everything is up and removed
by ``dev down``. It names each process by pid and by a word of its command
line, so that ``dev down`` never signals a process that merely reuses the pid
of one that is gone. Linux's ``/proc`` tells a process's command line and
whether it is a zombie (gone, not yet reaped by its new parent).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
STOP_ORDER = ("controller", "llm", "redis", "kafka")
"""The controller drains first, while its broker and Redis still answer."""


@dataclass(frozen=True, slots=True)
class Process:
    """One process ``dev up`` left running: its pid, a word of its command line, its address."""

    pid: int
    marker: str
    address: str
    log: str


@dataclass(slots=True)
class DevState:
    """What ``dev up`` started and what to export to use it."""

    processes: dict[str, Process] = field(default_factory=dict)
    exports: dict[str, str] = field(default_factory=dict)
    console: str = ""

    def write(self, directory: Path) -> None:
        path = directory / STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        temporary.replace(path)

    @classmethod
    def read(cls, directory: Path) -> DevState | None:
        """The state in ``directory``, or None when there is none (or it is unreadable)."""
        try:
            data: Any = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
            processes = {name: Process(**p) for name, p in data["processes"].items()}
            return cls(processes, dict(data["exports"]), str(data.get("console", "")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def running(self) -> dict[str, bool]:
        """Whether each process is still the one ``dev up`` started."""
        return {name: alive(p) for name, p in self.processes.items()}


def alive(process: Process) -> bool:
    """Whether ``process.pid`` runs, is no zombie, and its command line holds the marker."""
    proc = Path("/proc") / str(process.pid)
    try:
        stat = (proc / "stat").read_text(encoding="utf-8", errors="replace")
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[:1]
    return state != ["Z"] and process.marker in cmdline


def stop(process: Process, *, timeout: float) -> bool:
    """SIGTERM the process's group, SIGKILL after ``timeout``; False if it was not running."""
    if not alive(process):
        return False
    _signal(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(process):
        if time.monotonic() >= deadline:
            _signal(process.pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    # Each was started as the leader of its own process group (its children go with it).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def forget(directory: Path) -> None:
    (directory / STATE_FILE).unlink(missing_ok=True)
