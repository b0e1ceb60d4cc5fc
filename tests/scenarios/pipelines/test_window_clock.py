"""Release windows on a turned clock, through the real broker, Redis and daemon.

The team's business hours (Mon-Fri 09:00-17:00 Europe/Berlin, from
``engine.windows_file``) hold a stage that is ready on Friday at 17:55 until
Monday at 09:00, and a regression on the Saturday between is rolled back at
once. The daemon's clock is the wall clock plus an offset this test writes
(``run --clock-file``): it runs on at the wall clock's pace, so the gates,
sweeps and minimum stage times work as ever, and the test turns it from
Friday evening to Saturday noon to Monday morning.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.wire.messages import Arm
from controller.dev.clock import set_offset
from tests.scenarios.harness import Scenario
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BERLIN = ZoneInfo("Europe/Berlin")
FRIDAY_1755 = datetime(2026, 11, 27, 17, 55, tzinfo=BERLIN)
SATURDAY_NOON = datetime(2026, 11, 28, 12, 0, tzinfo=BERLIN)
MONDAY_BEFORE_NINE = datetime(2026, 11, 30, 8, 59, 50, tzinfo=BERLIN)
"""Ten seconds before the window opens: the daemon gates the ready stage about fifty times
in them (every 0.2 s), and waits."""
MONDAY_0900 = datetime(2026, 11, 30, 9, 0, tzinfo=BERLIN)
BUSINESS_HOURS = """\
windows:
  - kind: allow
    name: business-hours
    timezone: Europe/Berlin
    rule: FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0;BYSECOND=0
    duration: 8h
"""


def two_stages() -> Plan:
    """A fast plan naming no windows of its own: the team's apply."""
    return Plan(
        name="team-hours",
        stages=[
            Stage(percent=20, min_duration=timedelta(seconds=2), min_units_per_arm=20),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[Guardrail(metric="error_rate")],
        alpha=0.01,
    )


class TurnedClock:
    """The daemon's clock: the wall clock plus the offset in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def turn_to(self, moment: datetime) -> None:
        set_offset(self.path, moment - datetime.now(UTC))

    def now_ms(self) -> int:
        """What the daemon reads as now, for signing a command it will find fresh."""
        offset = float(self.path.read_text(encoding="ascii"))
        return int((datetime.now(UTC) + timedelta(seconds=offset)).timestamp() * 1000)


def stamped(message: dict[str, Any]) -> datetime:
    """A published message's ``ts`` (the daemon's clock) as an aware datetime."""
    ts = message["ts"]
    if isinstance(ts, int | float):
        return datetime.fromtimestamp(ts / 1000, tz=UTC)
    return datetime.fromisoformat(ts)


@pytest.mark.timeout(300)  # its own waits (up to 180 s) run out before pytest's limit
async def test_a_stage_ready_on_friday_evening_waits_for_monday_and_a_regression_does_not(
    scenario: Scenario, tmp_path: Path
) -> None:
    # Given the team's business hours and a daemon on a clock set to Friday 17:55 in Berlin
    windows = tmp_path / "windows.yaml"
    windows.write_text(BUSINESS_HOURS, encoding="utf-8")
    clock = TurnedClock(tmp_path / "clock")
    clock.turn_to(FRIDAY_1755)
    port = free_port()
    scenario.turn_clock_with(clock.path)
    scenario.configure(
        RC_ENGINE__WINDOWS_FILE=str(windows), RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1"
    )
    scenario.start_daemon()
    regressed = {"now": False}

    def errors(_state: dict[str, Any], arm: Arm) -> float:
        return 0.40 if regressed["now"] and arm is Arm.TREATMENT else 0.02

    scenario.run_apps("steady")
    scenario.run_apps("fragile", errors=errors)
    # When two rollouts whose plans name no windows start then
    for flag in ("steady", "fragile"):
        start = scenario.command("start", flag, plan=two_stages(), ts_ms=clock.now_ms())
        await scenario.send(start, flag=flag)
    # Then each first stage becomes ready after 17:00 and waits, saying until when
    for flag in ("steady", "fragile"):
        wait = await scenario.until(
            lambda f=flag: scenario.observed.decision_where(flag=f, action="wait"),  # type: ignore[misc]
            timeout=120,
            what=f"{flag}'s ready stage to wait for the window",
        )
        assert wait["reason"].startswith(
            "ready, waiting for the window that opens Mon 09:00 Europe/Berlin"
        ), wait["reason"]
        assert datetime.fromisoformat(wait["evidence"]["window"]["opens_at"]) == MONDAY_0900
        assert FRIDAY_1755 <= stamped(wait) < SATURDAY_NOON
    # ...and the status serves when the team's window opens
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        served = (await http.get("/rollouts/steady")).json()
    assert served["next_move"]["why"].startswith("ready, waiting for the window that opens")
    assert datetime.fromisoformat(served["next_move"]["at"]) == MONDAY_0900

    # When the clock reaches Saturday noon and one treatment regresses
    clock.turn_to(SATURDAY_NOON)
    regressed["now"] = True
    # Then that rollout is rolled back on Saturday, windows or not
    rollback = await scenario.until(
        lambda: scenario.observed.decision_where(flag="fragile", action="rollback"),
        timeout=120,
        what="the rollback on Saturday",
    )
    assert rollback["evidence"]["breach"] == "error_rate"
    assert SATURDAY_NOON <= stamped(rollback) < SATURDAY_NOON + timedelta(minutes=5)
    # ...while the healthy one, gated all along, still waits
    assert scenario.observed.decision_where(flag="steady", action="advance") is None
    rollout = await scenario.rollout("steady")
    assert rollout is not None
    assert rollout.stage == 0
    assert rollout.window_wait is not None

    # When the clock reaches Monday ten seconds before the window opens
    clock.turn_to(MONDAY_BEFORE_NINE)
    # Then the stage advances at 09:00, not before
    advance = await scenario.until(
        lambda: scenario.observed.decision_where(flag="steady", action="advance"),
        timeout=180,
        what="the advance when the window opens",
    )
    assert MONDAY_0900 <= stamped(advance) < MONDAY_0900 + timedelta(minutes=5)
    actions = [d["action"] for d in scenario.observed.decisions if d["flag"] == "steady"]
    assert actions[:3] == ["start", "wait", "advance"], actions
