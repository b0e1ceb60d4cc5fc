"""``rollout-controller demo``, headless, end to end: what a user gets from one command.

The demo runs as a real child process. It uses the services named by
``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL`` and ``LLM_BASE_URL`` when they are
set and starts its own otherwise (the embedded broker, ``redis-server``, the
SmolLM2 model server), so a missing service fails this test, never skips it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.core.advice import rationale_problem
from controller.core.wording import stage_label
from controller.demo.scenario import PERCENTS, demo_flags

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DURATION_SECONDS = 110
FAULT_STAGE = PERCENTS.index(25.0)


def read_log(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    messages = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert {m["type"] for m in messages} <= {"decision", "alert"}
    decisions = [m for m in messages if m["type"] == "decision"]
    return decisions, [m for m in messages if m["type"] == "alert"]


@pytest.mark.timeout(DURATION_SECONDS + 90)
def test_demo_completes_the_healthy_flag_and_rolls_the_faulty_one_back(tmp_path: Path) -> None:
    # Given the demo's two flags: the first one's treatment fails 3x as often from 25%
    faulty, healthy = (flag.name for flag in demo_flags(2))
    log = tmp_path / "decisions.jsonl"
    # When a user runs the demo, headless
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller",
            "demo",
            "--plain",
            *("--duration", str(DURATION_SECONDS)),
            *("--log", str(log)),
        ],
        capture_output=True,
        text=True,
        timeout=DURATION_SECONDS + 60,  # a bound on a demo that would not end
        check=False,
    )
    output = f"{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-3000:]}"
    # Then it says it passed: every flag finished before its own --duration deadline
    assert result.returncode == 0, output
    assert "demo passed" in result.stdout, output
    decisions, alerts = read_log(log)
    assert f"decision log: {log}" in result.stdout
    assert re.search(r"console: http://127\.0\.0\.1:\d+/ui", result.stdout), output
    # ...the healthy flag walked every stage to 100%
    mine = [d for d in decisions if d["flag"] == healthy and d["outcome"] == "applied"]
    assert [d["action"] for d in mine] == [
        "start",
        "advance",
        "advance",
        "advance",
        "advance",
        "complete",
    ]
    assert mine[-1]["phase_after"] == "completed"
    # ...the faulty one was rolled back on its error rate, at or after the fault, before 100%
    rollback = next(d for d in decisions if d["flag"] == faulty and d["action"] == "rollback")
    assert rollback["kind"] == "gate"
    assert rollback["phase_after"] == "rolled_back"
    assert FAULT_STAGE <= rollback["stage"] < len(PERCENTS) - 1
    assert rollback["evidence"]["breach"] == "error_rate"
    test = rollback["evidence"]["guardrails"]["error_rate"]
    assert test["regressed"] is True
    assert test["lower"] > 0
    arms = rollback["evidence"]["arms"]
    assert arms["treatment"]["errors"] / arms["treatment"]["requests"] > (
        arms["control"]["errors"] / arms["control"]["requests"]
    )
    assert not any(d["flag"] == faulty and d["action"] == "complete" for d in decisions)
    # ...with a critical rollback alert published for it, and none for the healthy flag
    (alert,) = [a for a in alerts if a["kind"] == "rollback"]
    assert (alert["flag"], alert["severity"]) == (faulty, "critical")
    assert not any(a["flag"] == healthy for a in alerts)
    # ...and the model was asked at every gate that advanced a stage
    advances = [d for d in decisions if d["action"] in ("advance", "complete")]
    assert advances
    for decision in advances:
        advice = decision["evidence"]["advisor"]
        assert advice["status"] in ("ok", "unavailable"), advice
        assert advice["prompt_version"] == "gate-v2"
    # ...every text names the rollback's stage one way: the alert, the decision line
    label = rollback["evidence"]["at_stage"]["label"]
    assert label == stage_label(rollback["stage"], len(PERCENTS), PERCENTS[rollback["stage"]])
    assert f"rolled back at {label}:" in alert["summary"]
    assert f"{faulty}: rollback applied at {label}:" in result.stdout, output
    # ...the model's words are labelled, and its size is called what it is
    assert "advisor: advisory, smollm2-135m-instruct: a model this small" in result.stdout
    said = [line for line in result.stdout.splitlines() if " says " in line]
    assert all("advisor (smollm2-135m-instruct, too small" in line for line in said), said
    quoted, unquoted = "; advisor's rationale: ", "; incoherent, rationale not quoted: "
    assert all(quoted in line or unquoted in line or line.endswith(" s)") for line in said), said
    # ...and a rationale that contradicts its action is recorded so, never quoted (#24)
    for decision in decisions:
        advice = decision["evidence"].get("advisor") or {}
        if advice.get("status") != "ok":
            continue
        why = rationale_problem(advice["action"], advice["rationale"])
        assert advice["coherent"] is (why is None), advice
        words = " ".join(advice["rationale"].split())
        if why and words:
            assert f"{quoted}{words[:30]}" not in result.stdout, advice
    # ...and the summary says the same
    summary = result.stdout[result.stdout.index("Summary") :]
    for expected in (faulty, healthy, "rolled_back", "completed", "100%", "5/5", "error rate +"):
        assert expected in summary, output
    # ...with the rollback's reason in percentage points and its interval
    assert re.search(r"error rate \+[\d.]+ pp \[", summary), output
