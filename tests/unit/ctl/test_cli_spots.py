"""The command lines' rough spots: version, help texts, plan validate, watch, pipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller import __version__
from controller.cli import main as controller_main
from controller.core.wire.messages import decision_or_alert
from controller.ctl.app import main
from controller.ctl.exits import EXIT_CONFIG, EXIT_READER_LEFT
from controller.ctl.looking.views import decision_line
from controller.ctl.operate.steering import in_time_order

ROOT = Path(__file__).resolve().parents[3]
PLAN = """\
name: careful
stages:
  - {percent: 2, min_duration: %s, min_units_per_arm: 50}
  - {percent: 100, min_duration: 0, min_units_per_arm: 0}
guardrails:
  - {metric: error_rate}
"""


def help_text(run: object, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        run(argv)  # type: ignore[operator]
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_rolloutctl_says_its_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert help_text(main, ["--version"], capsys).strip() == f"rolloutctl {__version__}"


def test_promote_help_prints_one_percent_sign(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(main, ["promote", "--help"], capsys)
    assert "100% with --to-end" in text
    assert "%%" not in text
    assert "%%" not in help_text(main, ["--help"], capsys)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["run", "--help"], "SIGHUP reloads the operator keys"),
        (["config", "show", "--help"], "secrets masked"),
        (["schemas", "export", "--help"], "with --check, write nothing"),
    ],
)
def test_every_daemon_command_explains_itself(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert says in " ".join(help_text(controller_main, argv, capsys).split())


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["plan", "draft", "--help"],
            "--deadline SECONDS, --timeout SECONDS answer within this many seconds of the"
            " command's start (30): the model gets what is left, and past it the built-in"
            " template is printed, saying why in one line on stderr",
        ),
        (
            ["plan", "draft", "--help"],
            "--allow-small-model ask the model even when it is known to be too small for the"
            " task (below 1 B parameters",
        ),
        (
            ["report", "--help"],
            "--deadline SECONDS with --narrative, answer within this many seconds of the"
            " command's start (30): the model gets what is left, and past it the report is"
            " printed without a narrative",
        ),
        (["rule", "draft", "--help"], "--timeout SECONDS how long the model may take to answer"),
    ],
)
def test_the_commands_asking_the_model_say_how_long_they_wait(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert says in " ".join(help_text(main, argv, capsys).split())


def write_plan(tmp_path: Path, duration: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN % duration, encoding="utf-8")
    return path


def test_plan_validate_explains_durations_in_the_plans_terms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_plan(tmp_path, "10 minutes")
    assert main(["plan", "validate", str(plan)]) == EXIT_CONFIG
    out = capsys.readouterr().out
    assert "stages.0.min_duration: not a duration:" in out
    assert "10m" in out
    assert "PT10M" in out
    assert "invalid character" not in out


@pytest.mark.parametrize("duration", ["10m", "PT10M", "600"])
def test_plan_validate_json_prints_the_plan_it_validated(
    duration: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_plan(tmp_path, duration)
    assert main(["plan", "validate", "--json", str(plan)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["valid"], result["error"]) == (True, None)
    stages = result["plan"]["stages"]
    assert [(s["percent"], s["min_duration"]) for s in stages] == [(2, "PT10M"), (100, "PT0S")]
    assert result["plan"]["name"] == "careful"


def test_watch_shows_a_decision_before_the_alert_it_raised_and_a_start_as_now() -> None:
    kill_alert = {
        "type": "alert", "v": 1, "id": "a1", "ts": 2000, "flag": "f", "kind": "kill",
        "severity": "critical", "summary": "f killed",
    }  # fmt: skip
    kill = {
        "type": "decision", "v": 1, "id": "d2", "ts": 2000, "flag": "f", "kind": "command",
        "action": "kill", "outcome": "applied",
    }  # fmt: skip
    start = {
        "type": "decision",
        "v": 1,
        "id": "d1",
        "kind": "command",
        "ts": 1000,
        "flag": "f",
        "action": "start",
        "outcome": "applied",
        "phase_before": None,
        "phase_after": "running",
    }
    ordered = in_time_order([kill_alert, kill, start])
    assert ordered == [start, kill, kill_alert]
    read = decision_or_alert(start)
    assert read is not None
    line = decision_line(read)
    assert line.endswith("start applied, now running")
    assert "None" not in line


@pytest.mark.parametrize("argv", [["plan", "validate", "PLAN"], ["--help"], ["--version"]])
def test_a_reader_that_left_ends_the_command_quietly(argv: list[str], tmp_path: Path) -> None:
    # Given a pipe whose reader has gone, as `| head -1` leaves it once it has its line
    reading, writing = os.pipe()
    os.close(reading)
    plan = write_plan(tmp_path, "PT10M")
    argv = [str(plan) if a == "PLAN" else a for a in argv]
    # When rolloutctl writes its output there
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "controller.ctl.app", *argv],
            stdout=writing,
            stderr=subprocess.PIPE,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writing)
    # Then it ends quietly: nothing on stderr; a command's output ends it as SIGPIPE
    # would (argparse's own help and version drop what cannot be written, and exit 0)
    assert done.stderr.decode() == ""
    assert done.returncode == (EXIT_READER_LEFT if argv[0] == "plan" else 0)
