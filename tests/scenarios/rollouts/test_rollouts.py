"""Whole rollouts, given/when/then, through the real broker, Redis and daemon."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.core.rollouts.advice import Advice
from controller.core.rollouts.rollout import Phase
from controller.core.trust import signing
from controller.core.wire.messages import Arm
from controller.ctl.operate.commands import encode_command, write_private_key
from tests.scenarios.harness import KEY_ID, Scenario, fast_plan
from tests.support.backing.services import LLM_MODEL_ALIAS
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def percents_published(world: Scenario, flag: str) -> list[float]:
    return [s["percent"] for s in world.observed.flag_states if s["flag"] == flag]


async def test_healthy_flag_walks_every_stage_to_100(scenario: Scenario) -> None:
    # Given a daemon and apps serving a healthy flag
    scenario.start_daemon()
    scenario.run_apps("checkout")
    # When an operator starts a rollout
    await scenario.start("checkout", fast_plan())
    # Then it completes, publishing each stage's percent in order
    done = await scenario.until(
        lambda: scenario.observed.decision_where(flag="checkout", action="complete"),
        timeout=120,
        what="the rollout to complete",
    )
    assert done["phase_after"] == "completed"
    # At 100% there is no control arm left: no comparison can regress.
    final = done["evidence"]["guardrails"]["error_rate"]
    assert final == "insufficient data" or final["half_width"] == "inf"
    # (the completed state reaches the flag-state topic's readers after the decision)
    await scenario.until(
        lambda: any(
            s["flag"] == "checkout" and s["status"] == "completed"
            for s in scenario.observed.flag_states
        ),
        timeout=30,
        what="the completed flag state",
    )
    assert percents_published(scenario, "checkout") == [1, 5, 25, 50, 100, 100]
    states = [s for s in scenario.observed.flag_states if s["flag"] == "checkout"]
    assert [s["version"] for s in states] == sorted({s["version"] for s in states})
    assert states[-1]["status"] == "completed"
    advances = [d for d in scenario.observed.decisions if d["action"] == "advance"]
    assert [d["stage"] for d in advances] == [1, 2, 3, 4]
    assert all(d["evidence"]["arms"]["treatment"]["units"] >= 20 for d in advances)
    tested = [d["evidence"]["guardrails"]["error_rate"] for d in advances]
    assert all(t == "insufficient data" or t["regressed"] is False for t in tested)
    # Each arm's own latency beside Δ: the apps' log-normal, median e³ ≈ 20 ms, p99 ≈ 40 ms.
    for arm in ("treatment", "control"):
        latency = [d["evidence"]["latency"][arm] for d in advances]
        assert all(q["count"] > 0 and 15 < q["p50"] < 27 for q in latency), latency
        assert all(q["p50"] <= q["p95"] <= q["p99"] < 80 for q in latency), latency
    assert scenario.observed.alerts == []


async def test_regression_at_25_percent_is_rolled_back_with_evidence(scenario: Scenario) -> None:
    # Given apps whose treatment starts failing once the flag reaches 25%
    def errors(state: dict[str, Any], arm: Arm) -> float:
        return 0.30 if arm is Arm.TREATMENT and state["percent"] >= 25 else 0.02

    scenario.start_daemon()
    scenario.run_apps("search", errors=errors)
    # When the rollout runs
    await scenario.start("search", fast_plan())
    # Then it is rolled back at the 25% stage, with an alert and the evidence
    rollback = await scenario.until(
        lambda: scenario.observed.decision_where(flag="search", action="rollback"),
        timeout=120,
        what="the rollback",
    )
    assert rollback["stage"] == 2
    assert rollback["evidence"]["breach"] == "error_rate"
    test = rollback["evidence"]["guardrails"]["error_rate"]
    assert test["regressed"] is True
    assert test["lower"] > 0
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag="search", kind="rollback"),
        timeout=10,
        what="the rollback alert",
    )
    assert alert["severity"] == "critical"
    assert alert["details"]["breach"] == "error_rate"
    last = [s for s in scenario.observed.flag_states if s["flag"] == "search"][-1]
    assert (last["status"], last["percent"]) == ("rolled_back", 0)


async def test_sample_ratio_mismatch_pauses_and_alerts(scenario: Scenario) -> None:
    # Given apps that lose half of the treatment's events
    lossy = random.Random(5)
    scenario.start_daemon()
    scenario.run_apps("banner", drop=lambda arm: arm is Arm.TREATMENT and lossy.random() < 0.5)
    # When the rollout runs
    await scenario.start("banner", fast_plan())
    # Then it pauses for SRM, says so, and goes no further
    paused = await scenario.until(
        lambda: scenario.observed.decision_where(flag="banner", action="pause:srm"),
        timeout=120,
        what="the SRM pause",
    )
    assert paused["evidence"]["srm"]["flagged"] is True
    assert paused["evidence"]["srm"]["sequential_p_value"] < 0.001
    await scenario.until(
        lambda: scenario.observed.alert_where(flag="banner", kind="srm"),
        timeout=10,
        what="the SRM alert",
    )
    await scenario.gates_ran("marker")
    rollout = await scenario.rollout("banner")
    assert rollout is not None
    assert rollout.phase is Phase.PAUSED
    assert [d["action"] for d in scenario.observed.decisions if d["flag"] == "banner"][-1] == (
        "pause:srm"
    )


async def test_restart_mid_rollout_resumes_with_same_timers(scenario: Scenario) -> None:
    # Given a rollout sitting in its 5% stage, which lasts a minute
    scenario.start_daemon()
    scenario.run_apps("profile")
    await scenario.start("profile", fast_plan(hold_stage=1))
    await scenario.until(
        lambda: scenario.observed.decision_where(flag="profile", action="advance", stage=1),
        timeout=60,
        what="the 5% stage",
    )
    before = await scenario.rollout("profile")
    assert before is not None
    # When the controller is killed (-9) and started again
    scenario.daemon.kill()
    scenario.start_daemon()
    await scenario.gates_ran("marker")
    # Then the rollout is where it was, with the same timers, and nothing was decided twice
    after = await scenario.rollout("profile")
    assert after is not None
    assert (after.phase, after.stage, after.stage_started_at) == (
        before.phase,
        before.stage,
        before.stage_started_at,
    )
    assert after.flag_version == before.flag_version
    seen: dict[tuple[str, str, Any], set[str]] = {}
    for d in scenario.observed.decisions:
        seen.setdefault((d["flag"], d["action"], d.get("stage")), set()).add(d["id"])
    assert all(len(ids) == 1 for ids in seen.values()), seen


async def test_forged_unsigned_stale_and_replayed_commands_are_refused(scenario: Scenario) -> None:
    # Given a running rollout
    scenario.start_daemon()
    scenario.run_apps("pricing")
    await scenario.start("pricing", fast_plan(hold_stage=0))
    await scenario.until(
        lambda: scenario.observed.decision_where(flag="pricing", action="start"),
        timeout=60,
        what="the start",
    )
    # When bad commands arrive
    forger = Ed25519PrivateKey.generate()
    forged = scenario.command("kill", "pricing", reason="forged")
    forged["sig"] = signing.sign(forged, forger)
    unsigned = scenario.command("kill", "pricing", reason="unsigned")
    del unsigned["sig"], unsigned["key_id"]
    stale = scenario.command(
        "kill", "pricing", reason="stale", ts_ms=int(time.time() * 1000) - 3_600_000
    )
    unknown = scenario.command("kill", "pricing", reason="unknown key")
    unknown["key_id"] = "nobody"
    pause = scenario.command("pause", "pricing", reason="legit")
    for bad in (forged, unsigned, stale, unknown):
        await scenario.send(bad, flag="pricing")
    await scenario.send(pause, flag="pricing")
    await scenario.send(encode_command(pause), flag="pricing")  # replayed verbatim
    # Then each is refused with its reason, the legitimate one applied once
    expected = {
        forged["id"]: "bad signature",
        unsigned["id"]: "unsigned command",
        stale["id"]: "stale command",
        unknown["id"]: "unknown key id",
    }

    def outcomes() -> dict[str, list[tuple[str, str]]]:
        found: dict[str, list[tuple[str, str]]] = {}
        for d in scenario.observed.decisions:
            if d.get("command_id"):
                found.setdefault(d["command_id"], []).append((d["outcome"], d["reason"]))
        return found

    await scenario.until(
        lambda: len(outcomes().get(pause["id"], [])) >= 2,
        timeout=30,
        what="both copies of the pause",
    )
    found = outcomes()
    for command_id, reason in expected.items():
        ((outcome, said),) = found[command_id]
        assert outcome == "rejected"
        assert said.startswith(reason), said
    assert found[pause["id"]] == [("applied", "legit"), ("rejected", "replayed command id")]
    rollout = await scenario.rollout("pricing")
    assert rollout is not None
    assert rollout.phase is Phase.PAUSED
    assert (
        scenario.observed.decision_where(flag="pricing", action="kill", outcome="applied") is None
    )


async def test_monitor_down_kills_its_flags(scenario: Scenario) -> None:
    # Given two flags mapped to an uptime monitor, and one that is not
    scenario.map_monitor("api-uptime", ["cart", "wishlist"])
    scenario.start_daemon()
    for flag in ("cart", "wishlist", "footer"):
        scenario.run_apps(flag, rate=600)
        await scenario.start(flag, fast_plan(hold_stage=0))
    await scenario.until(
        lambda: len([d for d in scenario.observed.decisions if d["action"] == "start"]) == 3,
        timeout=60,
        what="three starts",
    )
    # When the monitor reports down
    await scenario.monitor("api-uptime", "down", "inc-42")
    # Then the mapped flags are killed, with alerts; the other keeps running
    for flag in ("cart", "wishlist"):
        kill = await scenario.until(
            lambda f=flag: scenario.observed.decision_where(flag=f, action="kill"),  # type: ignore[misc]
            timeout=30,
            what=f"{flag} killed",
        )
        assert kill["evidence"]["monitor"] == "api-uptime"
        await scenario.until(
            lambda f=flag: scenario.observed.alert_where(flag=f, kind="kill"),  # type: ignore[misc]
            timeout=10,
            what=f"{flag} kill alert",
        )
        last = await scenario.until(
            lambda f=flag: [
                s
                for s in scenario.observed.flag_states  # type: ignore[misc]
                if s["flag"] == f and s["status"] == "killed"
            ],
            timeout=10,
            what=f"{flag} killed state",
        )
        assert last[-1]["percent"] == 0
    footer = await scenario.rollout("footer")
    assert footer is not None
    assert footer.phase is Phase.RUNNING


async def test_rolloutctl_send_starts_a_rollout(scenario: Scenario, tmp_path: Path) -> None:
    # Given the operator's key in a file, as `rolloutctl keygen` leaves it
    key_file = tmp_path / "ops-test.key"
    write_private_key(key_file, scenario.key)
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(fast_plan(hold_stage=0).model_dump(mode="json")))
    scenario.start_daemon()
    # When the real rolloutctl sends a start
    rolloutctl = Path(sys.executable).with_name("rolloutctl")
    result = subprocess.run(  # noqa: ASYNC221 - a short-lived CLI, as an operator runs it
        [
            str(rolloutctl),
            "send",
            "start",
            "cli-flag",
            "--plan",
            str(plan_file),
            "--key",
            str(key_file),
            "--key-id",
            KEY_ID,
            "--actor",
            "ana",
            "--bootstrap",
            scenario.bootstrap,
            "--topic",
            scenario.topics["commands"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Then the controller applies it, attributing it to the actor
    started = await scenario.until(
        lambda: scenario.observed.decision_where(flag="cli-flag", action="start"),
        timeout=30,
        what="the start from rolloutctl",
    )
    assert started["outcome"] == "applied"
    assert started["command_id"] in result.stdout


GATE_ACTIONS = ("advance", "complete", "hold", "pause:advisor_objection")


ADVISED_ROLLOUT_SECONDS = 300
"""A bound on five advised gates: the model decodes on one thread of a busy machine."""


@pytest.mark.timeout(ADVISED_ROLLOUT_SECONDS + 90)
async def test_gating_advisor_with_a_real_model_advises_every_gate(
    scenario: Scenario, llm_base_url: str
) -> None:
    # Given a daemon whose gates consult a real model in gating mode
    scenario.configure(
        RC_LLM__MODE="gating",
        LLM_BASE_URL=llm_base_url,
        RC_LLM__MODEL=LLM_MODEL_ALIAS,
        RC_LLM__RESPONSE_FORMAT="json_object",
        RC_LLM__TIMEOUT_SECONDS="60",
        RC_LLM__HOLD_SECONDS="1",
    )
    scenario.start_daemon()
    scenario.run_apps("assist")
    # When a rollout runs (an operator approves whenever the model objects)
    await scenario.start("assist", fast_plan())
    approved: set[str] = set()

    async def completed() -> dict[str, Any]:
        for d in scenario.observed.decisions:
            if d["action"] == "pause:advisor_objection" and d["id"] not in approved:
                approved.add(d["id"])
                await scenario.send(
                    scenario.command("approve", "assist", reason="reviewed"), flag="assist"
                )
        done = scenario.observed.decision_where(flag="assist", action="complete")
        assert done is not None, scenario.daemon.log_text()[-2000:]
        return done

    await eventually(completed, timeout=ADVISED_ROLLOUT_SECONDS, what="the rollout to complete")
    # Then every gate decision carries schema-valid advice from real inference
    gates = [
        d
        for d in scenario.observed.decisions
        if d["action"] in GATE_ACTIONS and d["kind"] != "command"
    ]
    assert len(gates) >= 4
    for decision in gates:
        advice = decision["evidence"]["advisor"]
        assert advice["status"] == "ok", advice
        Advice.model_validate({k: advice[k] for k in ("action", "confidence", "rationale")})
        assert advice["model"]
        assert advice["latency_ms"] > 0
        assert advice["prompt_version"] == "gate-v3"
