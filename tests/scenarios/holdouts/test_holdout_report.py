"""A holdout's report through the real broker, Redis and daemon: a regression a release's
own stages missed, seen against the units no release reached.

Three flags name a 2% holdout and are released to everyone (promoted to the end by
hand: their stages were too short to test anything). Then their users' requests arrive:
one flag's release fails twice as often as before it, the two others change nothing.
Held-out units are served control by each flag and report cohort ``holdout``; everyone
else reports treatment. ``GET /holdouts/q4`` and ``rolloutctl report --holdout q4``
name the regressing release, and its cumulative effect, and leave the healthy ones clean;
so does the console's holdout page.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from controller.core.rollouts.plan import Plan
from controller.core.wire.bucketing import held_out
from tests.scenarios.harness import Scenario, manual_plan
from tests.support.backing.services import free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME, PERCENT = "q4", 2.0
HOLDOUT = {"name": NAME, "percent": PERCENT}
FLAGS = {"ho-a": (20_000, 1.0), "ho-b": (60_000, 2.0), "ho-c": (20_000, 1.0)}
"""Each flag's users, and how much more often its release fails their requests."""
BASE_ERRORS = 0.02


def holdout_plan() -> Plan:
    return Plan.model_validate({**manual_plan().model_dump(), "holdout": HOLDOUT})


async def released(scenario: Scenario, flag: str) -> dict[str, Any]:
    """``flag`` started naming the holdout and promoted to the end; its flag state then."""
    for action, options in (("start", {"plan": holdout_plan()}), ("promote", {"to_end": True})):
        command = scenario.command(action, flag, **options)
        decided = await scenario.decided(command, flag=flag, what=f"{action} {flag}")
        assert decided["outcome"] == "applied", decided["reason"]

    def completed() -> dict[str, Any]:
        state = scenario.state(flag)
        assert state is not None
        assert state["status"] == "completed", state
        return state

    state: dict[str, Any] = await scenario.until(completed, timeout=60, what=f"{flag} completed")
    return state


def requests(
    flag: str, state: dict[str, Any], users: int, factor: float
) -> list[tuple[str, bytes]]:
    """Every user's 1-3 requests: held-out users' as the holdout's, the others' as treatment."""
    rng, run = random.Random(flag), uuid.uuid4().hex[:8]
    out = []
    for u in range(users):
        unit = f"user-{u}"
        held = held_out(NAME, PERCENT, unit)
        where = {"arm": "control", "cohort": "holdout"} if held else {"arm": "treatment"}
        rate = BASE_ERRORS if held else BASE_ERRORS * factor
        for i in range(rng.randint(1, 3)):
            event = {"v": 1, "type": "request", "id": f"{run}-{u}-{i}", "unit": unit,
                     "ts": int(time.time() * 1000), "flag": flag, "flag_version": state["version"],
                     "error": rng.random() < rate, "latency_ms": 20.0, **where}  # fmt: skip
            out.append((unit, orjson.dumps(event)))
    return out


@pytest.mark.timeout(300)  # its own waits (up to 180 s) run out before pytest's limit
async def test_the_holdout_report_names_the_release_its_own_stages_missed(
    scenario: Scenario,
) -> None:
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
    scenario.start_daemon()
    states = {flag: await released(scenario, flag) for flag in FLAGS}
    sent = 0
    for flag, (users, factor) in FLAGS.items():
        for unit, value in requests(flag, states[flag], users, factor):
            await scenario.send_event(value, unit=unit)
            sent += 1
    await scenario.flush()
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def every_request_counted() -> dict[str, Any]:
            answer = await http.get("/holdouts/q4")
            assert answer.status_code == 200, answer.text
            report: dict[str, Any] = answer.json()
            counted = sum(c["rest_requests"] + c["holdout_requests"] for c in report["flags"])
            assert counted == sent, f"{counted} of {sent} requests counted"
            return report

        report = await eventually(every_request_counted, timeout=180, what="every request counted")
        # The unknown and the malformed are refused, not read as no holdout
        assert (await http.get("/holdouts/nobody")).status_code == 404
        assert (await http.get("/holdouts/q4?alpha=0.7")).status_code == 400
        # A period that began after these releases started holds none of them
        later = await http.get("/holdouts/q4", params={"since": "2999-01-01T00:00:00Z"})
        assert later.status_code == 404, later.text
        # The console shows the same report, linked from each flag's page
        page = (await http.get("/ui/holdouts/q4")).text
        flag_page = (await http.get("/ui/rollouts/ho-b")).text
    verdicts = {c["scope"]: _errors(c)["verdict"] for c in report["flags"]}
    assert verdicts == {"ho-a": "no_regression_seen", "ho-b": "regressed",
                        "ho-c": "no_regression_seen"}  # fmt: skip
    assert all(c["sample_ratio_mismatch"] is False for c in report["flags"]), report
    units = {c["scope"]: c["rest_units"] + c["holdout_units"] for c in report["flags"]}
    # HyperLogLogs count units within about 2%
    assert units == {flag: pytest.approx(users, rel=0.03) for flag, (users, _) in FLAGS.items()}
    # Every flag's users are user-0 onwards: the cumulative counts each person once
    together = report["cumulative"]
    people = max(users for users, _ in FLAGS.values())
    assert together["rest_units"] + together["holdout_units"] == pytest.approx(people, rel=0.03)
    assert together["overlap"] == pytest.approx(
        sum(u for u, _ in FLAGS.values()) / people, rel=0.03
    )
    cumulative = _errors(together)
    assert cumulative["verdict"] == "regressed", cumulative
    assert cumulative["lower"] > 0
    assert page.count('data-guardrail="error_rate" data-verdict="regressed"') == 2, page
    assert 'href="/ui/holdouts/q4"' in flag_page
    # And rolloutctl shows the same report to a person
    shown = await _rolloutctl(port, "report", "--holdout", "q4")
    print(shown)  # with -s: the report a person reads
    assert "## ho-b (flag versions" in shown
    assert shown.count("**regressed**") == 2, shown


def _errors(comparison: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        g for g in comparison["guardrails"] if g["guardrail"] == "error_rate"
    ]
    assert len(found) == 1, comparison
    return found[0]


async def _rolloutctl(port: int, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.ctl.app", *args, "--url", f"http://127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode == 0, err.decode()
    return out.decode()
