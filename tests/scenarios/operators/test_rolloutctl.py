"""The real ``rolloutctl`` binary against the running daemon, broker and Redis."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.core.common import clock_text
from controller.core.reading import RolloutStatus, running_text
from controller.core.rollouts.plan import Plan
from controller.ctl.operate.commands import write_private_key
from tests.scenarios.harness import KEY_ID, Scenario, manual_plan
from tests.support.backing.services import free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROLLOUTCTL = str(Path(sys.executable).with_name("rolloutctl"))
FLAG = "cli-flag"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return orjson.loads(self.out)


class Operator:
    """Runs ``rolloutctl`` as a person would, with the scenario's key and addresses."""

    def __init__(self, scenario: Scenario, workdir: Path, port: int) -> None:
        key_file = workdir / f"{KEY_ID}.key"
        write_private_key(key_file, scenario.key)
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": scenario.bootstrap,
            "RC_TOPICS__COMMANDS": scenario.topics["commands"],
            "RC_TOPICS__DECISIONS": scenario.topics["decisions"],
            "RC_TOPICS__ALERTS": scenario.topics["alerts"],
            "ROLLOUTCTL_KEY": str(key_file),
            "ROLLOUTCTL_KEY_ID": KEY_ID,
            "ROLLOUTCTL_ACTOR": "ana",
            "ROLLOUTCTL_URL": f"http://127.0.0.1:{port}",
        }

    async def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        process = await asyncio.create_subprocess_exec(
            ROLLOUTCTL,
            *args,
            env={**self.env, **(env or {})},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=90)
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())


async def served_status(port: int) -> RolloutStatus:
    """The rollout as ``GET /rollouts/FLAG`` serves it, read as ``rolloutctl status`` reads
    it. A wait asks this, not ``rolloutctl``: a process each ask would cost half a second of
    CPU, on a machine the other tests share."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"http://127.0.0.1:{port}/rollouts/{FLAG}")
    assert answer.status_code == 200, answer.text
    return RolloutStatus.model_validate(answer.json())


async def until_counted(port: int) -> RolloutStatus:

    async def counted() -> RolloutStatus:
        status = await served_status(port)
        arms = status.evidence.arms or {}
        assert arms, status.evidence
        assert min(a.units for a in arms.values()) > 0, arms
        return status

    return await eventually(counted, timeout=60, what="units counted in both arms")


@pytest.mark.timeout(420)  # fifteen rolloutctl processes, one after another
async def test_operator_steers_a_rollout_with_rolloutctl(
    scenario: Scenario, tmp_path: Path
) -> None:
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port))
    scenario.start_daemon()
    scenario.run_apps(FLAG, rate=800)
    ctl = Operator(scenario, tmp_path, port)
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(manual_plan().model_dump(mode="json")))

    # start, and the decision comes back to the terminal
    started = await ctl("start", FLAG, "--plan", str(plan_file), "--reason", "ship it")
    assert (started.code, started.out.strip()) == (
        0,
        f"applied: start {FLAG} -> running, stage 1/4 (1%)",
    ), started.err

    # status: the table, then the detail with per-arm counts and guardrail bounds
    await until_counted(port)
    table = await ctl("status")
    assert table.code == 0, table.err
    header, row = table.out.splitlines()[:2]
    assert header.split()[:4] == ["FLAG", "PHASE", "STAGE", "PERCENT"]
    assert row.split()[:6] == [FLAG, "running", "stage", "1/4", "(1%)", "1%"]
    detail = await ctl("status", FLAG)
    assert "plan by-hand" in detail.out
    assert "treatment" in detail.out
    assert "control" in detail.out
    assert "guardrail error_rate:" in detail.out

    # plan validate previews each stage at the traffic the running rollout shows
    previewed = await ctl("plan", "validate", "--json", "--from-flag", FLAG, str(plan_file))
    assert previewed.code == 0, previewed.err
    power = previewed.json()["power"]
    assert power["traffic"]["requests_per_s"] > 0, power
    assert [s["percent"] for s in power["stages"]] == [1, 5, 25], power

    # once error rate is tested, status says what the running stage can detect
    async def error_rate_tested() -> str:
        return running_text(await served_status(port), "error_rate")

    await eventually(error_rate_tested, timeout=120, what="the running stage's power")
    shown = await ctl("status", FLAG)
    assert "  power: error rate: detectable from +" in shown.out, shown.out

    # pause; a second pause is rejected with its reason and exit code 3
    paused = await ctl("pause", FLAG, "--reason", "looking at dashboards")
    assert (paused.code, paused.out.strip()) == (
        0,
        f"applied: pause {FLAG} -> paused, stage 1/4 (1%)",
    )
    again = await ctl("pause", FLAG)
    assert again.code == 3
    assert again.out.strip() == f"rejected: pause {FLAG}: cannot pause a paused rollout"
    assert (await ctl("status", FLAG, "--json")).json()["pause_reason"] == "operator"

    # resume, promote to the next stage, then kill
    resumed = await ctl("resume", FLAG)
    assert resumed.code == 0, resumed.err
    promoted = await ctl("promote", FLAG, "--json")
    assert promoted.code == 0, promoted.err
    assert promoted.json()["stage"] == 1
    now = (await ctl("status", FLAG, "--json")).json()
    assert (now["phase"], now["stage"], now["percent"]) == ("running", 1, 5)
    killed = await ctl("kill", FLAG, "--reason", "pager")
    assert (killed.code, killed.out.strip()) == (
        0,
        f"applied: kill {FLAG} -> killed, stage 2/4 (5%)",
    )
    final = (await ctl("status", "--json")).json()["rollouts"]
    assert [(r["flag"], r["phase"], r["percent"]) for r in final] == [(FLAG, "killed", 0)]
    # a finished rollout says why it ended, and its stage clock stopped there
    ended = await ctl("status", FLAG)
    said = f"ended:       killed at {clock_text(final[0]['ended_at'])}: pager"
    assert said in ended.out, ended.out
    assert final[0]["evidence"]["actor"] == "ana"
    ran = datetime.fromisoformat(final[0]["ended_at"]) - datetime.fromisoformat(
        final[0]["stage_started_at"]
    )
    assert final[0]["time_in_stage_s"] == round(ran.total_seconds(), 1)

    # watch replays the audit trail, one line per decision
    watched = await ctl("watch", FLAG, "--from-beginning", "--max", "7", "--for", "20")
    assert watched.code == 0, watched.err
    lines = watched.out.splitlines()
    decisions = [line.split()[2:4] for line in lines if " ALERT " not in line]
    assert decisions == [
        ["start", "applied"],
        ["pause", "applied"],
        ["pause", "rejected"],
        ["resume", "applied"],
        ["promote", "applied"],
        ["kill", "applied"],
    ], lines
    alerts = [line.split()[2:5] for line in lines if " ALERT " in line]
    assert alerts == [["ALERT", "CRITICAL", "kill:"]], lines
    # ...in the order things happened: the kill's alert after the kill, a start as "now"
    kinds = [line.split()[2] for line in lines]
    assert kinds.index("ALERT") == kinds.index("kill") + 1, lines
    assert ", now running: ship it" in lines[0]
    assert "None" not in watched.out


async def test_a_rejected_command_says_why_and_exits_non_zero(
    scenario: Scenario, tmp_path: Path
) -> None:
    scenario.start_daemon()
    ctl = Operator(scenario, tmp_path, free_port())
    # an operator whose key the controller does not trust
    stranger = tmp_path / "stranger.key"
    write_private_key(stranger, Ed25519PrivateKey.generate())
    refused = await ctl(
        "pause", FLAG, env={"ROLLOUTCTL_KEY": str(stranger), "ROLLOUTCTL_KEY_ID": "stranger"}
    )
    assert refused.code == 3
    assert refused.out.strip() == f"rejected: pause {FLAG}: unknown key id 'stranger'"
    # a command for a flag with no rollout
    nothing = await ctl("resume", FLAG, "--json")
    assert nothing.code == 3
    assert nothing.json()["outcome"] == "rejected"
    assert nothing.json()["reason"]
    # a plan that can never complete: rolloutctl refuses to sign it...
    never = manual_plan().model_dump(mode="json")
    never["stages"][-1]["min_units_per_arm"] = 100
    plan_file = tmp_path / "never.yaml"
    plan_file.write_text(yaml.safe_dump(never))
    unsigned = await ctl("start", FLAG, "--plan", str(plan_file))
    assert unsigned.code == 78
    assert "stages[3].min_units_per_arm" in unsigned.err
    # ...and the controller refuses it when signed elsewhere, naming the field
    command = scenario.command("start", FLAG, plan=Plan.model_validate(never))
    decision = await scenario.decided(
        command, flag=FLAG, what="the decision on a start whose plan cannot complete"
    )
    assert decision["outcome"] == "rejected"
    assert decision["reason"].startswith("plan cannot work: error: stages[3].min_units_per_arm:")
    assert await scenario.rollout(FLAG) is None
    # a release window whose every opening is over (five days of 2024) is refused as well
    over = manual_plan().model_dump(mode="json")
    over["windows"] = [{"kind": "allow", "rule": "FREQ=DAILY;COUNT=5", "duration": "1h"}]
    command = scenario.command("start", FLAG, plan=Plan.model_validate(over))
    decision = await scenario.decided(
        command, flag=FLAG, what="the decision on a start whose window never opens again"
    )
    assert decision["outcome"] == "rejected"
    assert decision["reason"].startswith("plan cannot work: error: windows[0].rule:")
    assert "never opens again" in decision["reason"]
    assert await scenario.rollout(FLAG) is None


async def test_plan_validate_names_the_bad_field(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(manual_plan().model_dump(mode="json")))
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - {percent: 150}\n")
    process = await asyncio.create_subprocess_exec(
        ROLLOUTCTL,
        "plan",
        "validate",
        str(good),
        str(bad),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 78
    first, second = out.decode().splitlines()
    assert first == f"{good}: valid plan 'by-hand': 1% -> 5% -> 25% -> 100%; guardrails: error_rate"
    assert second.startswith(f"{bad}: invalid:")
    assert "percent" in second
