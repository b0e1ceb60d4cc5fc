"""Where a command's CPU time goes, by kind of process: a whole test run, or any command.

Runs COMMAND and, once a second until it ends, reads every process's CPU time from
``/proc`` (user and system, ``/proc/PID/stat``), keyed by pid and start time so that a
reused pid is a new process. At the end it prints, for each kind of process (the pytest
workers, the daemons the tests start, Apache Kafka, Redis, the apps in other languages,
...), how many were seen and the CPU seconds they used while the command ran, beside the
machine's busy and idle CPU seconds (``/proc/stat``) over the same time. The last line is
one JSON object.

    python bench/suite_cpu.py [--interval 1.0] -- make test
    python bench/suite_cpu.py -- .venv/bin/python -m pytest -n 3 --dist loadgroup tests/scenarios

What it cannot see: a process that lives less than one interval is missed, and one that
ends loses what it used after its last reading (at most one interval of it). The whole
machine is read, so what else runs on it is counted too (as its own kinds); run it on a
quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")

KINDS: tuple[tuple[str, str], ...] = (
    ("kafka.Kafka", "Apache Kafka nodes"),
    ("kafka.tools.", "Apache Kafka's tools (formatting a store, ...)"),
    ("exec(eval(sys.stdin", "pytest-xdist workers (tests, simulated apps, fixtures)"),
    ("controller.ctl.app", "rolloutctl"),
    ("bin/rolloutctl", "rolloutctl"),
    ("-m controller run", "daemons"),
    ("bin/rollout-controller run", "daemons"),
    ("warm_daemon", "daemons"),  # forked from a worker's forkserver, and the forkserver
    ("-m controller ", "rollout-controller's other commands"),
    ("bin/rollout-controller", "rollout-controller's other commands"),
    ("redis-server", "Redis"),
    ("redis-sentinel", "Redis"),
    ("otelcol", "OpenTelemetry Collector"),
    ("opentelemetry-javaagent", "Java apps"),
    ("chrom", "chromium"),
    ("playwright", "chromium"),
    ("unleash", "Unleash and its database"),
    ("postgres", "Unleash and its database"),
    ("-m pytest", "pytest's own process"),
    ("llama", "the model server"),
    ("tansu", "the embedded broker"),
)
"""The first kind whose text a process's command line holds; else its program's name."""


def kind_of(command_line: str, name: str) -> str:
    """The kind of a process, from its command line (NUL-separated arguments joined with
    spaces) and its name (``/proc/PID/stat``'s second field)."""
    for text, kind in KINDS:
        if text in command_line:
            return kind
    argv = command_line.split(" ")
    program = Path(argv[0]).name if command_line else name
    for runtime, said in (("python", "Python"), ("node", "Node.js")):
        if program.startswith(runtime) and len(argv) > 1:
            script = argv[2] if argv[1] == "-m" and len(argv) > 2 else Path(argv[1]).name
            return f"other {said}: {script}"
    return f"other: {program or name}"


@dataclass
class Processes:
    """Every process seen: its CPU seconds at the first and the last reading, its kind."""

    first: dict[tuple[int, str], float] = field(default_factory=dict)
    last: dict[tuple[int, str], float] = field(default_factory=dict)
    kinds: dict[tuple[int, str], str] = field(default_factory=dict)
    started: set[tuple[int, str]] = field(default_factory=set)
    """Processes first seen after the first reading: their CPU counts from zero."""

    def read(self, *, initial: bool = False) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text(encoding="ascii", errors="replace")
                argv = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue  # ended meanwhile
            name = stat[stat.find("(") + 1 : stat.rfind(")")]
            fields = stat[stat.rfind(")") + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / TICKS
            key = (int(entry.name), fields[19])  # pid and start time
            if key not in self.kinds:
                command_line = argv.replace(b"\0", b" ").decode(errors="replace").strip()
                self.kinds[key] = kind_of(command_line, name)
                self.first[key] = cpu
                if not initial:
                    self.started.add(key)
            self.last[key] = cpu

    def by_kind(self) -> tuple[dict[str, float], Counter[str]]:
        """CPU seconds used while the command ran (most first), and processes seen, by kind."""
        seconds: defaultdict[str, float] = defaultdict(float)
        count: Counter[str] = Counter()
        for key, kind in self.kinds.items():
            since = 0.0 if key in self.started else self.first[key]
            used = self.last[key] - since
            if used > 0 or key in self.started:
                seconds[kind] += used
                count[kind] += 1
        return dict(sorted(seconds.items(), key=lambda item: -item[1])), count


def machine_ticks() -> tuple[int, int]:
    """The machine's busy and idle CPU ticks since boot (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return sum(values) - idle, idle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    if args.interval <= 0:
        parser.error("--interval must be more than 0")
    processes = Processes()
    processes.read(initial=True)
    busy0, idle0 = machine_ticks()
    began = time.monotonic()
    child = subprocess.Popen(command)
    while child.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=args.interval)
        processes.read()
    wall = time.monotonic() - began
    busy1, idle1 = machine_ticks()
    seconds, count = processes.by_kind()
    busy, idle = (busy1 - busy0) / TICKS, (idle1 - idle0) / TICKS
    print(f"\n{wall:.0f} s of wall time; the machine busy {busy:.0f} CPU s, idle {idle:.0f}")
    for kind, used in seconds.items():
        print(f"{used:9.1f} s {count[kind]:6d}  {kind}")
    print(f"{sum(seconds.values()):9.1f} s in the processes seen")
    figures = {
        "exit_code": child.returncode,
        "wall_s": round(wall, 1),
        "busy_cpu_s": round(busy, 1),
        "idle_cpu_s": round(idle, 1),
        "cpu_s_by_kind": {kind: round(used, 1) for kind, used in seconds.items()},
        "processes_by_kind": dict(count.most_common()),
    }
    print(json.dumps(figures))
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
