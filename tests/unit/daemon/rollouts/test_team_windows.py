"""The team's release windows: read from ``engine.windows_file``, taken by every plan
that names none, in the machine's decisions and in the status's next move."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.adapters.memory import MemoryAggregates, MemoryOutputs, MemoryStates
from controller.core.common.errors import ConfigError
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.core.rollouts.rollout import CommandInput, GateInput, Verdict, VerdictKind
from controller.core.wire.messages import CommandAction
from controller.daemon.rollouts.engine import build_engine
from controller.daemon.rollouts.team_windows import read_windows_file
from controller.daemon.serving.status import StatusView
from controller.dev.clock import FileClock, set_offset
from controller.ports import DeadLetter
from controller.settings import EngineSettings, TopicSettings, load_settings

FRIDAY_1655_UTC = datetime(2026, 11, 27, 16, 55, tzinfo=UTC)  # 17:55 in Berlin
MONDAY_0800_UTC = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
HOURS = """\
windows:
  - kind: allow
    name: business-hours
    timezone: Europe/Berlin
    rule: FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0;BYSECOND=0
    duration: 8h
"""
PLAN = Plan(stages=[Stage(percent=5, min_duration=timedelta(0)), Stage(percent=100)])


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "windows.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_means_no_team_windows() -> None:
    assert read_windows_file(None) == ()


def test_the_file_holds_windows_as_a_plan_names_them(tmp_path: Path) -> None:
    read = read_windows_file(written(tmp_path, HOURS))
    assert [w.name for w in read] == ["business-hours"]
    assert read_windows_file(written(tmp_path, "windows: []\n")) == ()


# (what, file text, words the error holds)
REFUSED: list[tuple[str, str, str]] = [
    (
        "an unknown time zone",
        HOURS.replace("Europe/Berlin", "Europe/Atlantis"),
        "windows.0.timezone: Value error, unknown time zone",
    ),
    (
        "a rule that never fires",
        HOURS.replace("BYDAY=MO,TU,WE,TH,FR", "BYMONTH=2;BYMONTHDAY=30").replace(
            "WEEKLY", "YEARLY"
        ),
        "windows.0: Value error, rule: never opens",
    ),
    ("a malformed rule", HOURS.replace("BYHOUR=9", "BYHOUR"), "windows.0.rule: Value error"),
    ("a list at the top", "- {kind: allow}\n", "Input should be a valid dictionary"),
    ("an unknown key", "freezes: []\n", "freezes: Extra inputs are not permitted"),
    ("not YAML", "windows: [\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "words"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_bad_file_is_refused_naming_the_setting_and_the_field(
    tmp_path: Path, text: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        read_windows_file(written(tmp_path, text))
    assert "engine.windows_file" in str(caught.value)
    assert words in str(caught.value)


def test_a_missing_file_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read engine\.windows_file"):
        read_windows_file(tmp_path / "absent.yaml")


def test_the_settings_name_the_file(tmp_path: Path) -> None:
    path = written(tmp_path, HOURS)
    assert load_settings(engine={"windows_file": str(path)}).engine.windows_file == path


class NoDeadLetters:
    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        raise AssertionError(f"unexpected dead letters: {letters}")


async def test_the_engine_holds_a_plan_without_windows_to_the_teams(tmp_path: Path) -> None:
    """The one writer hands the team's windows to every input: the gate's advance waits
    on Friday evening and goes on Monday at 09:00; the status says when."""
    states, aggregates = MemoryStates(), MemoryAggregates()
    now = {"at": FRIDAY_1655_UTC}
    engine = build_engine(
        settings=EngineSettings(),
        topics=TopicSettings(),
        states=states,
        aggregates=aggregates,
        outputs=MemoryOutputs(),
        dead_letters=NoDeadLetters(),
        clock=lambda: now["at"],
        team_windows=read_windows_file(written(tmp_path, HOURS)),
    )
    start = CommandInput(
        action=CommandAction.START,
        flag="f",
        command_id="c1",
        actor="ana",
        now=FRIDAY_1655_UTC,
        plan=PLAN,
        new_rollout_id="r1",
        new_salt="s",
    )
    await engine.rollouts.apply("f", start)
    ready = Verdict(VerdictKind.ADVANCE, "ready")
    await engine.rollouts.apply("f", GateInput(ready, FRIDAY_1655_UTC))
    waiting = (await states.load("f")).rollout
    assert waiting is not None
    assert waiting.stage == 0
    assert waiting.window_wait is not None
    assert waiting.window_wait.startswith("ready, waiting for the window that opens Mon 09:00")
    status = StatusView(
        states=states,
        aggregates=aggregates,
        stale_after=timedelta(days=14),
        clock=lambda: now["at"],
        team_windows=engine.rollouts.team_windows,
    )
    (shown,) = await status("f")
    assert shown.next_move is not None
    assert shown.next_move.at == MONDAY_0800_UTC.isoformat()
    await engine.rollouts.apply("f", GateInput(ready, MONDAY_0800_UTC))
    moved = (await states.load("f")).rollout
    assert moved is not None
    assert moved.stage == 1
    assert moved.window_wait is None


def test_a_turned_clock_reads_its_offset_whenever_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    clock = FileClock(path)
    assert abs(clock() - datetime.now(UTC)) < timedelta(minutes=1)  # no file: the wall clock
    set_offset(path, timedelta(days=3))
    assert timedelta(days=3) - timedelta(minutes=1) < clock() - datetime.now(UTC)
    set_offset(path, timedelta(days=-2))
    assert clock() - datetime.now(UTC) < timedelta(days=-2) + timedelta(minutes=1)
    path.write_text("not a number\n", encoding="ascii")
    assert clock() - datetime.now(UTC) < timedelta(days=-2) + timedelta(minutes=1)
