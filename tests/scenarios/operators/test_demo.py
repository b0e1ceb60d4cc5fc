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

import orjson
import pytest

from controller.core.reading.wording import stage_label
from controller.core.rollouts.advice import rationale_problem
from controller.core.rules.text import parse
from controller.core.stats.limits import NO_CONTROL
from controller.demo.scenario import (
    BETA_RULE,
    ERROR_RATE_LIMIT,
    FLAG_STATE_KEY_ID,
    PERCENTS,
    RINGS,
    STAFF,
    demo_flags,
    demo_plan,
)
from controller.demo.snapshot import rings

# Its own model server answers the demo's advisor: beside the model tests, on one worker.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("model")]

DURATION_SECONDS = 240
"""The demo ends when its flags do (about a minute); the cap only stops one that would not
(the model answers slowly on a busy machine)."""
STAFF_RING = rings(demo_plan())[0]


def read_log(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    messages = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert {m["type"] for m in messages} <= {"decision", "alert"}
    decisions = [m for m in messages if m["type"] == "decision"]
    return decisions, [m for m in messages if m["type"] == "alert"]


@pytest.mark.timeout(DURATION_SECONDS + 90)
def test_demo_walks_the_healthy_flag_through_its_rings_and_rolls_the_faulty_one_back_in_its_first(
    tmp_path: Path,
) -> None:
    # Given the demo's two flags in rings: the first one's treatment fails 4x as often
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
    # ...the operator's segments were put first, by signed commands the controller applied
    puts = {d["flag"]: d for d in decisions if d["kind"] == "segment"}
    assert sorted(puts) == ["segment:beta", "segment:staff"]
    assert {(d["action"], d["outcome"]) for d in puts.values()} == {("segment_put", "applied")}
    assert puts["segment:staff"]["evidence"]["count"] == len(STAFF)
    assert puts["segment:beta"]["evidence"]["rule"] == orjson.loads(parse(BETA_RULE).to_json())
    first_start = min(i for i, d in enumerate(decisions) if d["action"] == "start")
    assert all(decisions.index(d) < first_start for d in puts.values())
    # ...and every decision, the segments' too, signed by the demo's controller as published
    signed = {(d.get("key_id"), bool(d.get("sig"))) for d in decisions}
    assert signed == {(FLAG_STATE_KEY_ID, True)}, signed
    # ...the healthy flag walked every ring to everyone at 100%
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
    gated = mine[1:]
    assert [d["evidence"]["at_stage"]["index"] for d in gated] == list(range(len(RINGS)))
    assert [d["evidence"]["audience"]["stage"] for d in gated] == [
        audience or "everyone" for audience, _percent in RINGS
    ]
    assert [d["evidence"]["audience"]["percent"] for d in gated] == list(PERCENTS)
    for decision in gated:  # each ring was served: its gate counted treated users
        assert decision["evidence"]["arms"]["treatment"]["units"] > 0, decision
    # ...the faulty one was rolled back inside its first ring, staff, on its error-rate limit
    rollback = next(d for d in decisions if d["flag"] == faulty and d["action"] == "rollback")
    assert rollback["kind"] == "gate"
    assert rollback["phase_after"] == "rolled_back"
    assert rollback["stage"] == 0
    evidence = rollback["evidence"]
    assert evidence["audience"]["stage"] == RINGS[0][0]
    assert evidence["breach"] == "error_rate"
    assert evidence["comparison"] == NO_CONTROL
    test = evidence["limits"]["error_rate"]["test"]
    assert test["regressed"] is True
    assert test["lower"] > ERROR_RATE_LIMIT
    arms = evidence["arms"]
    assert arms["treatment"]["errors"] / arms["treatment"]["requests"] > ERROR_RATE_LIMIT
    assert arms["control"]["units"] == 0  # staff all get the treatment: nothing to compare
    assert not any(
        d["flag"] == faulty and d["action"] in ("advance", "complete") for d in decisions
    )
    # ...with a critical rollback alert published for it, and none for the healthy flag
    (alert,) = [a for a in alerts if a["kind"] == "rollback"]
    assert (alert["flag"], alert["severity"]) == (faulty, "critical")
    assert not any(a["flag"] == healthy for a in alerts)
    # ...and no advance waited for the model (advisory): its opinions are records of
    # their own, each on an advance, whenever they arrived
    advances = [d for d in decisions if d["action"] in ("advance", "complete")]
    assert advances
    assert not any("advisor" in d["evidence"] for d in advances)
    for opinion in [d for d in decisions if d["action"] == "opinion"]:
        assert opinion["evidence"]["advisor_mode"] == "advisory", opinion
        assert opinion["evidence"]["opinion_on"]["statistical_verdict"] == "advance"
        assert opinion["evidence"]["advisor"]["prompt_version"] == "gate-v3"
    # ...every text names the rollback's stage one way, and its ring: the alert, the decision line
    label = rollback["evidence"]["at_stage"]["label"]
    assert label == stage_label(0, len(PERCENTS), PERCENTS[0]) == "stage 1/5 (100%)"
    assert f"rolled back at {label}:" in alert["summary"]
    assert f"{faulty}: rollback applied at {label}, ring {STAFF_RING}:" in result.stdout, output
    # ...and the plain lines said each ring the healthy flag's gate decided on
    for stage, ring in enumerate(rings(demo_plan())):
        at = re.escape(stage_label(stage, len(PERCENTS), PERCENTS[stage]))
        line = rf"{healthy}: (advance|complete) applied at {at}[^\n]*, ring {re.escape(ring)}: "
        assert re.search(line, result.stdout), (ring, output)
    # ...the model's words are labelled, and its size is called what it is
    assert "advisor: advisory, smollm2-135m-instruct: a model this small" in result.stdout
    said = [line for line in result.stdout.splitlines() if " says " in line]
    assert all("advisor (smollm2-135m-instruct, too small" in line for line in said), said
    quoted, unquoted = "; advisor's rationale: ", "; incoherent, rationale not quoted: "
    assert all(quoted in line or unquoted in line or line.endswith(" s)") for line in said), said
    # ...and a rationale that contradicts its action is recorded so, never quoted
    for decision in decisions:
        advice = decision["evidence"].get("advisor") or {}
        if advice.get("status") != "ok":
            continue
        why = rationale_problem(advice["action"], advice["rationale"])
        assert advice["coherent"] is (why is None), advice
        words = " ".join(advice["rationale"].split())
        if why and words:
            assert f"{quoted}{words[:30]}" not in result.stdout, advice
    # ...and the summary says the same, naming the ring each flag ended in
    summary = result.stdout[result.stdout.index("Summary") :]
    for expected in (faulty, healthy, "rolled_back", "completed", "5/5", "0/5", STAFF_RING):
        assert expected in summary, output
    assert "everyone 100%" in summary, output
    # ...with the rollback's reason: the error rate above its limit, with no control
    assert re.search(r"error_rate [\d.]+ is above its limit 0\.03 with no", summary), output
