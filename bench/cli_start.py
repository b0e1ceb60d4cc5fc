"""How soon ``rolloutctl`` answers: ``--help``, and ``status FLAG`` against a running controller.

Each command runs in a fresh interpreter, as an operator's shell runs it, with compiled
bytecode, as a wheel install has: the sources' bytecode goes to a private cache
(``PYTHONPYCACHEPREFIX``), which one untimed run of each command fills. Then ``--runs``
rounds (10) each run a bare ``python -c pass`` (the baseline, measured in the same run), then
``rolloutctl --help``, then ``rolloutctl status FLAG``; each command's median wall-clock time,
CPU time (user + system) and peak RSS are printed, with its time over the bare interpreter's
and its ratio to it. The target is 0.5 s for each command (``--target``). The controller is
the one ``rollout-controller dev up --no-model`` starts, with a rollout of ``bench-cli``
started by ``rolloutctl start`` (or, with ``--url``, a running controller and ``--flag``, read
with ``$ROLLOUTCTL_TOKEN``).

Then ``python -X importtime`` runs each command three times more, and the quickest run is
shown (one run is at the mercy of the machine's load): the modules that took longest to
import, by package (the controller's by wing), with the total.

``--source DIR`` times another checkout's commands instead (its ``controller`` package first
on ``PYTHONPATH``, the controller too), e.g. a ``git worktree`` of an older commit: the
figures before and after a change, each beside its own bare interpreter.

The last line printed is one JSON object.

    python bench/cli_start.py [--runs 10] [--target 0.5] [--url URL --flag FLAG] [--source DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FLAG = "bench-cli"
PLAN = ROOT / "examples" / "plans" / "quickstart.yaml"
SHOWN = 8
"""How many of the slowest packages to import are shown per command."""
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


@dataclass
class Timed:
    """A command's runs: wall-clock and CPU seconds, peak RSS in MB."""

    argv: list[str]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)

    def run(self, env: dict[str, str], cwd: Path) -> None:
        """One run, from ``cwd`` (not this checkout, whose package would come first)."""
        started = time.perf_counter()
        child = subprocess.Popen(self.argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        self.wall.append(time.perf_counter() - started)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(self.argv)} exited {child.returncode}")
        self.cpu.append(usage.ru_utime + usage.ru_stime)
        self.rss.append(usage.ru_maxrss / 1024)

    def reset(self) -> None:
        self.wall.clear()
        self.cpu.clear()
        self.rss.clear()

    def figures(self, baseline: Timed | None = None) -> dict[str, Any]:
        wall, cpu = statistics.median(self.wall), statistics.median(self.cpu)
        shown: dict[str, Any] = {
            "wall_s": round(wall, 3),
            "wall_s_max": round(max(self.wall), 3),
            "cpu_s": round(cpu, 3),
            "rss_mb": round(max(self.rss), 1),
        }
        if baseline is not None:
            bare, bare_cpu = statistics.median(baseline.wall), statistics.median(baseline.cpu)
            shown |= {
                "over_bare_s": round(wall - bare, 3),
                "ratio_to_bare": round(wall / bare, 1),
                "cpu_ratio_to_bare": round(cpu / bare_cpu, 1),
            }
        return shown


def bytecode_env(cache: Path, source: Path | None) -> dict[str, str]:
    """The environment of every timed command: bytecode written to, and read from, ``cache``;
    the controller package of ``source``, where given."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if source is not None:
        env["PYTHONPATH"] = str(source.resolve())
    return env | {"PYTHONPYCACHEPREFIX": str(cache)}


@contextmanager
def controller(home: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A controller from ``dev up --no-model`` with a rollout of FLAG; its exports."""
    up = [str(BIN / "rollout-controller"), "dev", "up", "--no-model", "--dir", str(home)]
    done = subprocess.run(up, env=env, cwd=home.parent, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"dev up failed:\n{done.stderr[-2000:]}")
    try:
        exports = dict(re.findall(r"^export (\w+)=(\S*)$", done.stdout, re.MULTILINE))
        start = [str(BIN / "rolloutctl"), "start", FLAG, "--plan", str(PLAN), "--reason", "bench"]
        out = subprocess.DEVNULL
        started = subprocess.run(start, env=env | exports, cwd=home.parent, stdout=out, check=False)
        if started.returncode != 0:
            raise SystemExit(f"rolloutctl start exited {started.returncode}")
        yield exports
    finally:
        down = [str(BIN / "rollout-controller"), "dev", "down", "--dir", str(home)]
        subprocess.run(down, env=env, cwd=home.parent, check=False, capture_output=True)


def import_times(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """``-X importtime`` of the quickest of three runs of ``rolloutctl ARGV``."""
    runs = [_import_time(argv, env, cwd) for _ in range(3)]
    return min(runs, key=lambda run: int(run["total_ms"]))


def _import_time(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """``-X importtime`` of one run of ``rolloutctl ARGV``: the total and the slowest packages."""
    probe = f"from controller.ctl.app import main; main({argv!r})"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    own: Counter[str] = Counter()
    modules = 0
    for line in done.stderr.splitlines():
        if found := _IMPORT_LINE.match(line):
            own[_package(found[4])] += int(found[1])
            modules += 1
    return {
        "modules": modules,
        "total_ms": round(sum(own.values()) / 1000),
        "slowest_ms": {name: round(us / 1000) for name, us in own.most_common(SHOWN)},
    }


def _package(module: str) -> str:
    """The controller's modules by wing (``controller.core.wire``), others by package."""
    parts = module.split(".")
    return ".".join(parts[:3]) if parts[0] == "controller" else parts[0]


def measure(args: argparse.Namespace, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    bare = Timed([sys.executable, "-c", "pass"])
    ctl = str(BIN / "rolloutctl")
    commands = {"help": Timed([ctl, "--help"]), "status": Timed([ctl, "status", args.flag])}
    for timed in (bare, *commands.values()):
        timed.run(env, cwd)  # fills the bytecode cache; not counted
        timed.reset()
    for _ in range(args.runs):
        for timed in (bare, *commands.values()):
            timed.run(env, cwd)
    figures = {"bare": bare.figures()}
    for name, timed in commands.items():
        within = statistics.median(timed.wall) <= args.target
        figures[name] = timed.figures(bare) | {"within_target": within}
    figures["imports"] = {
        "help": import_times(["--help"], env, cwd),
        "status": import_times(["status", args.flag], env, cwd),
    }
    return figures


def show(figures: dict[str, Any], args: argparse.Namespace) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{args.runs} runs each, medians; load average {load}; target {args.target:g} s")
    for name, label in (("bare", "python -c pass"), ("help", "--help"), ("status", "status FLAG")):
        f = figures[name]
        over = (
            f" ({f['over_bare_s']:+.3f} s over bare, x{f['ratio_to_bare']})"
            if name != "bare"
            else ""
        )
        print(
            f"  {label:15} {f['wall_s']:.3f} s wall{over}, {f['cpu_s']:.3f} s CPU, "
            f"{f['rss_mb']:.0f} MB"
        )
    for name, seen in figures["imports"].items():
        slowest = ", ".join(f"{m} {ms}" for m, ms in seen["slowest_ms"].items())
        print(f"  imports of {name}: {seen['modules']} modules, {seen['total_ms']} ms; {slowest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="rounds of the three commands (10)")
    parser.add_argument("--target", type=float, default=0.5, help="seconds (0.5)")
    parser.add_argument("--url", help="a running controller (else dev up starts one)")
    parser.add_argument("--flag", default=FLAG, help="with --url: a flag with a rollout")
    parser.add_argument("--source", type=Path, help="another checkout whose commands to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cli-start-") as tmp:
        env = bytecode_env(Path(tmp) / "pycache", args.source)
        if args.url:
            figures = measure(args, env | {"ROLLOUTCTL_URL": args.url}, Path(tmp))
        else:
            with controller(Path(tmp) / "dev", env) as exports:
                figures = measure(args, env | exports, Path(tmp))
    figures |= {"runs": args.runs, "target_s": args.target, "load": list(os.getloadavg())}
    figures["source"] = str(args.source or ROOT)
    show(figures, args)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
