"""``rollout-controller dev up``, your own plan, ``rolloutctl start``, ``examples/app.py``.

The README's "Your own flag in five minutes", as a newcomer runs it: the real
commands as child processes, the exports ``dev up`` prints and nothing else.
The model is left out (``--no-model``): the advisor has tests of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.http_client import answers_ok
from controller.demo.devstate import DevState, alive
from tests.services import free_port
from tests.waiting import eventually_sync

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
FLAG = "my-first-flag"
PLAN = """\
name: my-first
stages:
  - {percent: 10, min_duration: 2s, min_units_per_arm: 20}
  - {percent: 50, min_duration: 2s, min_units_per_arm: 20}
  - {percent: 100, min_duration: 0s, min_units_per_arm: 0}
guardrails:
  - {metric: error_rate}
"""


def run(*argv: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def exports(text: str) -> dict[str, str]:
    """The ``export NAME=VALUE`` lines, as a shell would read them (no quoting needed here)."""
    lines = (line.removeprefix("export ") for line in text.splitlines())
    return {name: value for name, _, value in (line.partition("=") for line in lines)}


def test_dev_up_then_your_own_flag_advances_then_dev_down(tmp_path: Path) -> None:
    home = tmp_path / "dev"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RC_", "ROLLOUTCTL_"))}
    env["PYTHONPATH"] = str(ROOT)
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "LLM_BASE_URL"):
        env.pop(name, None)
    dev = [str(BIN / "rollout-controller"), "dev"]
    port = str(free_port())
    try:
        # Given `dev up --port`, beside another stack's health port (8001), whose stdout
        # is the exports to paste
        with another_stacks_health_port():
            started = run(*dev, "up", "--no-model", "--dir", str(home), "--port", port, env=env)
        assert started.returncode == 0, started.stderr
        exported = exports(started.stdout)
        assert set(exported) == {
            "KAFKA_BOOTSTRAP_SERVERS",
            "REDIS_URL",
            "ROLLOUTCTL_URL",
            "ROLLOUTCTL_KEY",
            "ROLLOUTCTL_KEY_ID",
            "ROLLOUTCTL_HEALTH_URL",
        }
        assert exported["ROLLOUTCTL_URL"] == f"http://127.0.0.1:{port}"
        assert exported["ROLLOUTCTL_HEALTH_URL"] != "http://127.0.0.1:8001"
        assert answers_ok(f"{exported['ROLLOUTCTL_HEALTH_URL']}/readyz", timeout_s=5)
        assert "/ui?token=" in started.stderr
        shell = {**env, **exported}
        # ...and a second `dev up` finds it up and prints the same exports
        again = run(*dev, "up", "--no-model", "--dir", str(home), env=env)
        assert (again.returncode, exports(again.stdout)) == (0, exported), again.stderr
        assert "already up" in again.stderr

        # When the newcomer writes a plan and starts it with rolloutctl
        plan = tmp_path / "plan.yaml"
        plan.write_text(PLAN, encoding="utf-8")
        ctl = str(BIN / "rolloutctl")
        checked = run(ctl, "plan", "validate", str(plan), env=shell)
        assert checked.returncode == 0, checked.stdout
        start = run(ctl, "start", FLAG, "--plan", str(plan), "--reason", "first try", env=shell)
        assert start.stdout.strip() == f"applied: start {FLAG} -> running, stage 1/3 (10%)"
        # ...and serves the flag from examples/app.py
        app = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "app.py"), "--flag", FLAG, "--seconds", "90"],
            env=shell,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Then the rollout advances on the app's own events
            status = wait_for_stage(ctl, shell, stage=1)
        finally:
            app.terminate()
            app.wait(timeout=30)
        assert status["plan"] == "my-first"
        assert status["percent"] >= 50
        assert status["stage_percents"] == [10, 50, 100]

        # And `dev status` names every process running; `dev down` stops them all
        shown = run(*dev, "status", "--dir", str(home), env=env)
        assert shown.returncode == 0, shown.stdout
        state = DevState.read(home)
        assert state is not None
        assert set(state.processes) == {"kafka", "redis", "controller"}
    finally:
        stopped = run(*dev, "down", "--dir", str(home), env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert not any(alive(process) for process in state.processes.values())
    assert DevState.read(home) is None
    # ...and a second `dev down` has nothing to stop
    twice = run(*dev, "down", "--dir", str(home), env=env)
    assert (twice.returncode, "nothing to stop" in twice.stderr) == (0, True)


@contextlib.contextmanager
def another_stacks_health_port() -> Iterator[None]:
    """Hold 8001, as a first dev stack's controller would (if this machine has it free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        with contextlib.suppress(OSError):
            holder.bind(("127.0.0.1", 8001))
            holder.listen()
        yield


def wait_for_stage(ctl: str, env: dict[str, str], *, stage: int) -> dict[str, Any]:

    def reached() -> dict[str, Any]:
        answer = run(ctl, "status", FLAG, "--json", env=env, timeout=30)
        status: dict[str, Any] = json.loads(answer.stdout) if answer.returncode == 0 else {}
        assert status.get("stage", -1) >= stage, (answer.stdout, answer.stderr)
        return status

    return eventually_sync(reached, timeout=120, what=f"stage {stage}")
