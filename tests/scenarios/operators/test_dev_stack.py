"""The README's "Your own flag in five minutes", its commands run in order as written.

``rollout-controller dev up``, ``rolloutctl plan validate`` and ``start`` with
``examples/plans/quickstart.yaml``, ``examples/app.py`` in the background, and
``rolloutctl watch`` until the first ``advance``, ``rolloutctl audit export`` and
``audit check`` of what the controller published: the real commands as child
processes, with the exports ``dev up`` prints and nothing else. The test adds
only what keeps it apart from other stacks (``--dir``, ``--port``, the paths under
``--dir`` and its export's file) and leaves the model out (``--no-model``): the
advisor has tests of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.http_client import answers_ok
from controller.demo.devstate import DevState, alive
from tests.support.backing.services import free_port
from tests.support.waiting import eventually_sync

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[3]
SECTION = "## Your own flag in five minutes"


class Step:
    """One command of the README's block, with the output its comment line shows."""

    def __init__(self, line: str) -> None:
        self.background = line.rstrip().endswith("&")
        command = line.rstrip().removesuffix("&")
        unwrapped = re.fullmatch(r'eval "\$\((.*)\)"', command.strip())
        self.argv = shlex.split(unwrapped.group(1) if unwrapped else command)
        self.shown: list[str] = []

    @property
    def words(self) -> list[str]:
        """The argv without the virtualenv's path: ``rolloutctl start my-flag ...``."""
        return [Path(self.argv[0]).name, *self.argv[1:]]

    def resolved(self) -> list[str]:
        program = sys.executable if self.words[0] == "python" else str(BIN / self.words[0])
        return [program, *self.argv[1:]]


def readme_steps() -> list[Step]:
    """The commands of the section's shell block; ``# ...`` lines are what the one before prints."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    block = section[section.index("```sh\n") + len("```sh\n") :]
    steps: list[Step] = []
    for line in block[: block.index("```")].splitlines():
        if line.startswith("# "):
            steps[-1].shown.append(line.removeprefix("# "))
        else:
            steps.append(Step(re.sub(r"\s+#\s.*$", "", line)))
    return steps


def run(*argv: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def exports(text: str) -> dict[str, str]:
    """The ``export NAME=VALUE`` lines, as a shell would read them (no quoting needed here)."""
    lines = (line.removeprefix("export ") for line in text.splitlines())
    return {name: value for name, _, value in (line.partition("=") for line in lines)}


@pytest.fixture(params=["embedded", "kafka"])
def broker_args(request: pytest.FixtureRequest) -> list[str]:
    """The README's default (the embedded broker), then `--broker kafka`."""
    if request.param == "embedded":
        return []
    request.getfixturevalue("apache_kafka")
    return ["--broker", "kafka"]


@pytest.mark.timeout(300)  # its own waits add up past the default 180 s on a loaded machine
def test_the_readmes_five_minutes_dev_up_plan_app_first_advance_dev_down(
    tmp_path: Path, broker_args: list[str]
) -> None:
    steps = readme_steps()
    assert [step.words[:2] for step in steps] == [
        ["rollout-controller", "dev"],
        ["rolloutctl", "plan"],
        ["rolloutctl", "start"],
        ["python", "examples/app.py"],
        ["rolloutctl", "watch"],
        ["rolloutctl", "audit"],
        ["rolloutctl", "audit"],
        ["rollout-controller", "dev"],
        ["rollout-controller", "dev"],
    ]
    up, validate, start, app, watch, export, check, status, down = steps
    assert [up.words[2], status.words[2], down.words[2]] == ["up", "status", "down"]
    assert app.background
    flag = start.words[2]
    home = tmp_path / "dev"
    apart = ["--dir", str(home)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RC_", "ROLLOUTCTL_"))}
    env["PYTHONPATH"] = str(ROOT)
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "LLM_BASE_URL"):
        env.pop(name, None)
    port = str(free_port())
    try:
        # Given `dev up --port`, beside another stack's health port (8001), whose stdout
        # is the exports to paste
        with another_stacks_health_port():
            started = run(
                *up.resolved(), "--no-model", *broker_args, *apart, "--port", port, env=env
            )
        assert started.returncode == 0, started.stderr
        exported = exports(started.stdout)
        assert set(exported) == {
            "KAFKA_BOOTSTRAP_SERVERS",
            "REDIS_URL",
            "ROLLOUTCTL_URL",
            "ROLLOUTCTL_KEY",
            "ROLLOUTCTL_KEY_ID",
            "ROLLOUTCTL_HEALTH_URL",
            "ROLLOUTCTL_TOKEN",
        }
        assert exported["ROLLOUTCTL_URL"] == f"http://127.0.0.1:{port}"
        assert exported["ROLLOUTCTL_HEALTH_URL"] != "http://127.0.0.1:8001"
        assert answers_ok(f"{exported['ROLLOUTCTL_HEALTH_URL']}/readyz", timeout_s=5)
        assert "/ui?token=" in started.stderr
        shell = {**env, **exported}
        # ...and a second `dev up` finds it up and prints the same exports
        again = run(*up.resolved(), "--no-model", *broker_args, *apart, env=env)
        assert (again.returncode, exports(again.stdout)) == (0, exported), again.stderr
        assert "already up" in again.stderr

        # When the newcomer validates the quickstart plan and starts it, as the README shows
        checked = run(*validate.resolved(), env=shell)
        assert checked.returncode == 0, checked.stdout
        started_rollout = run(*start.resolved(), env=shell)
        assert started_rollout.stdout.splitlines() == start.shown, started_rollout.stderr
        # ...and serves the flag from examples/app.py in the background
        served = subprocess.Popen(
            app.resolved(),
            cwd=ROOT,
            env=shell,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Then `rolloutctl watch` prints the first advance, on the app's own events
            advanced = first_advance(watch.resolved(), shell, flag, tmp_path / "watch.out")
        finally:
            served.terminate()
            served.wait(timeout=30)
        assert [as_documented(advanced)] == [as_documented(line) for line in watch.shown]
        assert re.search(r"\((held|advanced \w+), harm (not )?excluded: error_rate\)", advanced)
        # ...and `rolloutctl status` shows the rollout past its first stage
        rollout = eventually_sync(
            lambda: moved_on(flag, shell), timeout=60, what="the status past stage 1"
        )
        assert (rollout["plan"], rollout["stage_percents"]) == ("my-first", [10, 50, 100])
        # ...and the span exported with the seal signed by the operator key checks whole,
        # each decision signed by the controller's own key
        exported_file = tmp_path / "audit.jsonl"
        for step in (export, check):
            done = run(*here(step.resolved(), home, exported_file), env=shell)
            assert done.returncode == 0, done.stdout + done.stderr
        assert [counted(line) for line in done.stdout.splitlines()] == [
            counted(line.replace("audit.jsonl", str(exported_file))) for line in check.shown
        ]

        # And `dev status` names every process running; `dev down` stops them all
        shown = run(*status.resolved(), *apart, env=env)
        assert shown.returncode == 0, shown.stdout
        state = DevState.read(home)
        assert state is not None
        assert set(state.processes) == {"kafka", "redis", "controller"}
    finally:
        stopped = run(*down.resolved(), *apart, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert not any(alive(process) for process in state.processes.values())
    assert DevState.read(home) is None
    # ...and a second `dev down` has nothing to stop
    twice = run(*down.resolved(), *apart, env=env)
    assert (twice.returncode, "nothing to stop" in twice.stderr) == (0, True)


def here(argv: list[str], home: Path, exported: Path) -> list[str]:
    """``argv`` with the README's ``.rollout-dev`` the test's ``--dir`` and its export's file
    in the test's directory."""
    paths = {"audit.jsonl": str(exported)}
    return [paths.get(a, a.replace(".rollout-dev/", f"{home}/")) for a in argv]


def counted(line: str) -> str:
    """A line with its counts left out, which no two runs share."""
    return re.sub(r"\b\d[\d,]*\b(?= (events|decisions))", "N", line)


def moved_on(flag: str, env: dict[str, str]) -> dict[str, Any]:
    answer = run(str(BIN / "rolloutctl"), "status", flag, "--json", env=env, timeout=30)
    assert answer.returncode == 0, (answer.stdout, answer.stderr)
    status: dict[str, Any] = json.loads(answer.stdout)
    assert status["stage"] >= 1, status
    return status


def without_clock(line: str) -> str:
    """A decision line without its leading ``HH:MM:SS``, which no two runs share."""
    return re.sub(r"^\d\d:\d\d:\d\d\s+", "", line)


def as_documented(line: str) -> str:
    """A decision line as the README shows one: without its clock, and with how its
    guardrails stood left out (held or undecided, as the run's traffic had it)."""
    standing = r"(guardrails hold and )?the stage is complete \([^)]*\)"
    return re.sub(standing, "the stage is complete (...)", without_clock(line))


def first_advance(watch: list[str], env: dict[str, str], flag: str, out: Path) -> str:
    """Run ``watch`` until it prints an ``advance`` of ``flag``; that line."""
    with out.open("w", encoding="utf-8") as sink:
        watching = subprocess.Popen(
            watch, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.DEVNULL
        )
        try:
            return eventually_sync(
                lambda: advance_in(out, flag), timeout=150, what=f"an advance of {flag}"
            )
        finally:
            stop(watching)


def advance_in(out: Path, flag: str) -> str:
    lines = out.read_text(encoding="utf-8").splitlines()
    advances = [line for line in lines if re.search(rf"\s{re.escape(flag)}\s+advance ", line)]
    assert advances, lines
    return advances[0]


def stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def another_stacks_health_port() -> Iterator[None]:
    """Hold 8001, as a first dev stack's controller would (if this machine has it free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        with contextlib.suppress(OSError):
            holder.bind(("127.0.0.1", 8001))
            holder.listen()
        yield
