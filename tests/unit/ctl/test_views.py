"""Operator text views: the status table, the detail, decision and outcome lines."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.reading.views import RolloutStatus
from controller.core.trust import app_keys
from controller.core.wire import AppKeyEvidence
from controller.core.wire.messages import Alert, Decision, decision_or_alert
from controller.ctl.looking.views import decision_line, outcome_line, status_detail, status_table
from controller.ctl.operate.app_keys import command_of
from controller.ctl.operate.app_keys import outcome_line as app_key_outcome_line

AT_2_OF_5 = {"index": 1, "number": 2, "of": 5, "percent": 5.0, "label": "stage 2/5 (5%)"}


def rollout(**over: Any) -> RolloutStatus:
    """A rollout as an older controller served it: the fields added since are absent."""
    base: dict[str, Any] = {
        "flag": "checkout",
        "rollout_id": "r1",
        "plan": "default",
        "phase": "running",
        "pause_reason": None,
        "stage": 1,
        "stages": 5,
        "percent": 5.0,
        "flag_version": 3,
        "time_in_stage_s": 754.2,
        "min_duration_s": 1800.0,
        "min_units_per_arm": 100,
        "verdict": "hold",
        "verdict_reason": "minimum stage time not reached",
        "evidence": {
            "arms": {
                "treatment": {"units": 50, "exposures": 60, "requests": 200, "errors": 3},
                "control": {"units": 950, "exposures": 990, "requests": 4000, "errors": 40},
            },
            "guardrails": {
                "error_rate": {
                    "delta": 0.005,
                    "lower": -0.01,
                    "upper": 0.02,
                    "tolerance": 0.0,
                    "regressed": False,
                },
                "latency_p95": "insufficient data",
            },
            "srm": {"chi2": 0.4, "p_value": 0.52, "sequential_p_value": 1.0, "flagged": False},
        },
    }
    return RolloutStatus.model_validate({**base, **over})


def published(fields: dict[str, Any]) -> Decision | Alert:
    """A decision or alert as read from its topic: ``fields`` with the envelope."""
    kind = {} if fields["type"] == "alert" else {"kind": "transition"}
    message = decision_or_alert({"v": 1, "id": "m1", **kind, **fields})
    assert message is not None, fields
    return message


def test_status_table_aligns_one_row_per_rollout() -> None:
    done = rollout(flag="search", phase="killed", verdict=None, evidence={}, percent=0.0)
    text = status_table([rollout(), rollout(phase="paused", pause_reason="srm"), done])
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["FLAG", "PHASE", "STAGE", "PERCENT"]
    assert lines[1].split() == [
        "checkout", "running", "stage", "2/5", "5%", "12m34s", "50/950", "1.50%/1.00%", "hold",
    ]  # fmt: skip
    assert "paused (srm)" in lines[2]
    assert lines[3].split() == ["search", "killed", "stage", "2/5", "0%", "-", "-", "-", "-"]
    columns = {line.index("PERCENT") if "PERCENT" in line else None for line in lines[:1]}
    assert columns == {lines[1].index("5%")}


def test_status_names_the_stage_as_everything_else_does() -> None:
    served = rollout(at_stage=AT_2_OF_5, phase="rolled_back", percent=0.0)
    assert status_table([served]).splitlines()[1].split()[2:6] == ["stage", "2/5", "(5%)", "0%"]
    assert "stage:       stage 2/5 (5%), serving 0% (flag version 3)" in status_detail(served)


@pytest.mark.parametrize(
    ("ring", "line"),
    [
        (None, None),
        ({"rollout": None, "stage": 'segment("staff")', "percent": 100}, 'segment("staff") 100%'),
        ({"rollout": 'country == "TH"', "stage": "everyone", "percent": 5},
         'everyone 5% within country == "TH"'),
        ({"stage": "\x1b[2J<b>", "percent": 5}, "\ufffd[2J<b> 5%"),
    ],
)  # fmt: skip
def test_status_names_a_targeted_rollouts_ring(
    ring: dict[str, Any] | None, line: str | None
) -> None:
    base = rollout().evidence.wire()
    text = status_detail(rollout(evidence=base if ring is None else {**base, "audience": ring}))
    audience = [each for each in text.splitlines() if each.startswith("audience:")]
    assert audience == ([] if line is None else [f"audience:    {line}"])


def test_status_table_without_rollouts() -> None:
    assert status_table([]) == "no rollouts"


def test_status_detail_shows_bounds_and_srm() -> None:
    text = status_detail(rollout())
    assert "stage:       stage 2/5, serving 5% (flag version 3)" in text
    assert "in stage:    12m34s (minimum 30m00s, 100 units per arm)" in text
    # Rates in percentage points with the lift against control (40/4000 = 1%), one convention;
    # +50% past a tolerance of 0, not yet significant, is watched, never "ok".
    expected = (
        "guardrail error_rate: error rate +0.5 pp [-1.0, +2.0] (+50%), tolerance 0 pp,"
        " watching (above tolerance, not yet significant)"
    )
    assert expected in text
    assert "guardrail latency_p95: not yet tested (too few events)" in text
    assert "sample ratio: chi2 0.4, sequential p 1 (ok)" in text


LATENCY = {
    "treatment": {"p50": 21.04, "p95": 48.239, "p99": 1204.5, "count": 1204},
    "control": {"p50": None, "p95": None, "p99": None, "count": 0},
}


@pytest.mark.parametrize(
    ("latency", "lines"),
    [
        (
            LATENCY,
            [
                "latency:     treatment p50 21.0 ms · p95 48.2 ms · p99 1,204 ms (n 1,204)",
                "             control   no latency events yet",
            ],
        ),
        # Odd parts from another version cost a blank, never the page.
        (
            {"treatment": {"p50": "fast", "p95": 0.421, "p99": "inf"}, "control": 3},
            [
                "latency:     treatment p50 - · p95 0.42 ms · p99 -",
                "             control   no latency events yet",
            ],
        ),
        ("none", []),
    ],
)
def test_status_detail_shows_each_arms_latency(latency: object, lines: list[str]) -> None:
    evidence = {**rollout().evidence.wire(), "latency": latency}
    text = status_detail(rollout(evidence=evidence)).splitlines()
    assert [line for line in text if line.startswith(("latency:", "             c"))] == lines
    if lines:  # beside the arms' counts, above the guardrails' Δ
        assert text.index(lines[0]) < next(i for i, s in enumerate(text) if "guardrail" in s)


def test_odd_evidence_from_another_version_prints_as_a_blank() -> None:
    odd = {
        "arms": {"treatment": {"units": "many"}, "control": 7},
        "guardrails": {"error_rate": {"delta": "x", "regressed": "yes"}},
        "srm": {"flagged": 1},
    }
    text = status_detail(rollout(evidence=odd))
    assert "  treatment  units        -  exposures        -" in text
    assert "  control    units        -" in text
    said = "guardrail error_rate: error rate: no estimate yet, tolerance -, not yet tested"
    assert f"{said} (no estimate yet)" in text
    assert "sample ratio: chi2 -, sequential p - (ok)" in text
    assert status_table([rollout(evidence=odd)]).splitlines()[1].split()[6:8] == ["-/-", "-/-"]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {"type": "decision", "flag": "f", "action": "advance", "outcome": "applied",
             "stage": 2, "phase_before": "running", "phase_after": "running",
             "reason": "stage passed"},
            "f  advance applied at stage 3 (running): stage passed",
        ),
        (
            {"type": "decision", "flag": "f", "action": "advance", "outcome": "applied",
             "stage": 2, "phase_before": "running", "phase_after": "running",
             "reason": "stage passed", "evidence": {"at_stage": AT_2_OF_5}},
            "f  advance applied at stage 2/5 (5%) (now stage 3/5) (running): stage passed",
        ),
        (
            {"type": "decision", "flag": "f", "action": "rollback", "outcome": "applied",
             "stage": 2, "phase_before": "running", "phase_after": "rolled_back", "reason": ""},
            "f  rollback applied at stage 3, running -> rolled_back",
        ),
        (
            {"type": "decision", "flag": "f", "action": "rollback", "outcome": "applied",
             "stage": 1, "phase_before": "running", "phase_after": "rolled_back", "reason": "",
             "evidence": {"at_stage": AT_2_OF_5}},
            "f  rollback applied at stage 2/5 (5%), running -> rolled_back",
        ),
        (
            {"type": "alert", "flag": "f", "severity": "critical", "kind": "kill",
             "summary": "f killed"},
            "f  ALERT CRITICAL kill: f killed",
        ),
    ],
)  # fmt: skip
def test_decision_lines(message: dict[str, Any], expected: str) -> None:
    line = decision_line(published({**message, "ts": "2026-11-22T10:00:00+00:00"}))
    assert line.split("  ", 1)[1] == expected


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        ({"outcome": "applied", "action": "pause", "flag": "f", "phase_after": "paused",
          "stage": 0}, "applied: pause f -> paused, stage 1"),
        ({"outcome": "applied", "action": "promote", "flag": "f", "phase_after": "running",
          "stage": 2, "evidence": {"at_stage": AT_2_OF_5}},
         "applied: promote f -> running, stage 2/5 (5%) (now stage 3/5)"),
        ({"outcome": "rejected", "action": "resume", "flag": "f", "reason": "no rollout"},
         "rejected: resume f: no rollout"),
        # promote --to-end of a plan ending at 50%: completion serves everyone, not 50%
        ({"outcome": "applied", "action": "promote", "flag": "f", "phase_after": "completed",
          "stage": 0, "evidence": {"at_stage": {**AT_2_OF_5, "index": 0, "number": 1, "of": 2,
                                                "label": "stage 1/2 (5%)"}}},
         "applied: promote f -> completed from stage 1/2 (5%), serving 100%: a completed"
         " rollout gives the feature to every unit"),
    ],
)  # fmt: skip
def test_outcome_lines(decision: dict[str, Any], expected: str) -> None:
    read = published({"type": "decision", "ts": 1000, **decision, "kind": "command"})
    assert isinstance(read, Decision)
    assert outcome_line(read) == expected


APP_KEY = {"type": "decision", "ts": 1000, "kind": "app_key", "flag": "app-key:shop"}


@pytest.mark.parametrize(
    ("decision", "given", "expected"),
    [
        ({"outcome": "applied", "action": "revoke"}, {}, "applied: revoke app-key:shop"),
        ({"outcome": "applied", "action": "create"},
         {"what": "create shop", "result": "id 00a1, client key: evaluate"},
         "applied: create shop -> id 00a1, client key: evaluate"),
        ({"outcome": "rejected", "action": "revoke", "reason": "no key named 'shop'"},
         {"what": "revoke shop", "result": "ignored when rejected"},
         "rejected: revoke shop: no key named 'shop'"),
        ({"outcome": "applied", "action": "segment_put", "flag": "segment:beta"},
         {"what": "segment put beta", "result": "version 2, 40 ids"},
         "applied: segment put beta -> version 2, 40 ids"),
    ],
)  # fmt: skip
def test_outcome_lines_of_decisions_without_a_rollout_name_no_phase(
    decision: dict[str, Any], given: dict[str, str], expected: str
) -> None:
    read = published({**APP_KEY, **decision})
    assert isinstance(read, Decision)
    line = outcome_line(read, **given)
    assert line == expected
    assert "None" not in line


@pytest.mark.parametrize(
    ("over", "phase"),
    [
        ({}, "running"),
        ({"watch_until": "2026-11-22T14:00:00+00:00", "percent": 99.0}, "running (watch)"),
        (
            {"watch_until": "2026-11-22T14:00:00+00:00", "phase": "paused", "pause_reason": "srm"},
            "paused (srm) (watch)",
        ),
        ({"phase": "completed", "verdict": None, "stale": True}, "completed (stale)"),
        ({"phase": "completed", "verdict": None, "stale": False}, "completed"),
        ({"phase": "completed", "verdict": None}, "completed"),  # an older controller
    ],
)
def test_status_marks_watches_and_stale_flags(over: dict[str, Any], phase: str) -> None:
    r = rollout(**over)
    row = status_table([r]).splitlines()[1]
    assert row.startswith(f"checkout  {phase}  ")
    detail = status_detail(r)
    assert f"phase:       {phase}" in detail
    assert ("watch:       until" in detail) == ("watch_until" in over)
    assert ("remove the flag from the code" in detail) == bool(over.get("stale"))


WAITING = {
    "why": "ready, waiting for the window that opens Mon 09:00 Europe/Berlin",
    "at": "2026-11-23T08:00:00+00:00",
}
HELD = {"why": "held by the policy on no_traffic; resumes only by an operator", "at": None}


def test_status_says_why_a_rollout_stands_still_below_the_table() -> None:
    waiting = rollout(next_move=WAITING)
    held = rollout(flag="search", phase="paused", pause_reason="no_traffic", next_move=HELD)
    lines = status_table([waiting, rollout(flag="cart"), held]).splitlines()
    assert lines[4:] == [
        "",
        "checkout: ready, waiting for the window that opens Mon 09:00 Europe/Berlin",
        "search: held by the policy on no_traffic; resumes only by an operator",
    ]
    assert lines[:4] == status_table([rollout(), rollout(flag="cart"), held]).splitlines()[:4]


def test_status_detail_shows_the_values_a_plan_declares() -> None:
    values = {"type": "string", "control": "v1-ranker", "treatment": "v2-ranker"}
    detail = status_detail(rollout(values=values))
    assert 'values:      treatment "v2-ranker", control "v1-ranker" (string)' in detail
    assert "values:" not in status_detail(rollout())  # false and true: nothing to say


def test_status_detail_says_why_a_rollout_stands_still() -> None:
    detail = status_detail(rollout(next_move=WAITING))
    assert "next move:   ready, waiting for the window that opens Mon 09:00 Europe/Berlin" in detail
    assert "next move:" not in status_detail(rollout())
    assert "\n\n" not in status_table([rollout()])


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        ({"outcome": "applied", "action": "create",
          "evidence": {"app_key": {"name": "shop", "id": "00a1", "client": True,
                                   "scopes": ["evaluate"]}}},
         "applied: app-key create shop -> id 00a1, client key: evaluate"),
        ({"outcome": "rejected", "action": "revoke", "reason": "no key named 'shop'"},
         "rejected: app-key revoke shop: no key named 'shop'"),
    ],
)  # fmt: skip
def test_app_key_outcome_lines_use_the_shared_line(decision: dict[str, Any], expected: str) -> None:
    read = published({**APP_KEY, **decision})
    assert isinstance(read, Decision)
    assert app_key_outcome_line(read, "shop") == expected


def test_a_completed_rollout_says_it_serves_everyone_not_its_last_stage() -> None:
    done = rollout(phase="completed", percent=100.0, verdict=None, evidence={}, stage=0, stages=2)
    assert (
        "stage:       completed after stage 1/2, serving 100%: a completed rollout gives the"
        " feature to every unit (flag version 3)"
    ) in status_detail(done)


def _published_app_key_decisions() -> dict[str, Decision]:
    """What the daemon publishes for a create, a revoke and a refused revoke of key ``shop``."""
    create = command_of("create", "shop", actor="ana", key_id="k1", secret="s", client=True)
    made = app_keys.decide({}, create, now_ms=1_000)
    assert isinstance(made, app_keys.AppKey)
    revoke = command_of("revoke", "shop", actor="ana", key_id="k1")
    gone = app_keys.decide({made.id: made}, revoke, now_ms=2_000)
    again = command_of("revoke", "shop", actor="ana", key_id="k1")
    audits = {
        "create": app_keys.audit(create, made, now_ms=1_000),
        "revoke": app_keys.audit(revoke, gone, now_ms=2_000),
        "again": app_keys.audit(again, "app key shop is already revoked", now_ms=3_000),
    }
    read = {name: published(body) for name, body in audits.items()}
    assert all(isinstance(d, Decision) for d in read.values())
    return {name: d for name, d in read.items() if isinstance(d, Decision)}


def test_app_key_outcome_lines_name_the_verb_once_for_what_the_daemon_publishes() -> None:
    decisions = _published_app_key_decisions()
    said = decisions["create"].evidence
    assert isinstance(said, AppKeyEvidence)
    assert said.app_key is not None
    key_id = said.app_key.id
    lines = {name: app_key_outcome_line(d, "shop") for name, d in decisions.items()}
    assert lines == {
        "create": f"applied: app-key create shop -> id {key_id}, client key: evaluate, events",
        "revoke": f"applied: app-key revoke shop -> id {key_id}, client key: evaluate, events",
        "again": "rejected: app-key revoke shop: app key shop is already revoked",
    }


def test_status_detail_says_the_stage_waits_for_held_partitions() -> None:
    waiting = "evidence incomplete: partitions [1, 2, 3] of events held for an operator's choice"
    said = rollout(
        verdict_reason=waiting,
        evidence={"incomplete": {"held": {"events": [1, 2, 3]}, "waiting": waiting}},
    )
    text = status_detail(said)
    assert f"gate:        hold: {waiting}" in text
    assert text.count(waiting) == 1  # the gate's reason says it: no "waiting:" line again
    assert "late:" not in text
    apart = rollout(evidence={"incomplete": {"held": {"events": [1]}, "waiting": waiting}})
    assert f"waiting:     {waiting}" in status_detail(apart)  # said by nothing else


STUCK = (
    "evidence incomplete: partitions [2] of events not yet counted up to 2026-11-28 20:15:03 UTC"
)


def _stuck(**over: Any) -> RolloutStatus:
    """A stage held on incomplete evidence, as a controller serves it: its next move, its
    needs, the gate's reason and its evidence all carry the one sentence."""
    needs = {**NEEDS, "partitions": STUCK, "lines": ["minimum stage time: 2 min 30 s left", STUCK]}
    return rollout(
        verdict_reason=STUCK,
        next_move={"why": f"the gate holds: {STUCK}", "at": None},
        needs=needs,
        evidence={"incomplete": {"lagging": {"events": [2]}, "waiting": STUCK}},
        **over,
    )


def test_status_says_each_sentence_once_in_the_order_it_came() -> None:
    detail = status_detail(_stuck()).splitlines()
    assert [line for line in detail if STUCK in line] == [f"next move:   the gate holds: {STUCK}"]
    first = detail.index(f"next move:   the gate holds: {STUCK}")
    assert detail[first + 1 : first + 2] == ["still needs: minimum stage time: 2 min 30 s left"]
    assert "gate:        hold" in detail
    assert not any(line.startswith("waiting:") for line in detail)
    table = status_table([_stuck()])
    assert table.count(STUCK) == 1
    assert table.splitlines()[-1] == "checkout still needs: minimum stage time: 2 min 30 s left"


@pytest.mark.parametrize(
    ("over", "line"),
    [
        ({"watch_until": "2026-11-28T20:15:03.123456+00:00"},
         "watch:       until 2026-11-28 20:15:03 UTC, the holdback stays on control"),
        ({"phase": "rolled_back", "verdict": None, "verdict_reason": "error rate regressed",
          "ended_at": "2026-11-28T20:15:03.654321+00:00"},
         "ended:       rolled_back at 2026-11-28 20:15:03 UTC: error rate regressed"),
    ],
)  # fmt: skip
def test_status_prints_times_for_people(over: dict[str, Any], line: str) -> None:
    detail = status_detail(rollout(**over))
    assert line in detail.splitlines()
    assert "T20:15" not in detail  # never the raw ISO form


def test_status_detail_says_evidence_came_late() -> None:
    why = "partitions [1] of events held or lagging earlier in the stage, counted late"
    text = status_detail(rollout(evidence={"late": {"partitions": {"events": [1]}, "why": why}}))
    assert f"late:        {why}" in text
    assert "waiting:" not in text


WIDENED = "units that send many requests or fail together make the interval 2.3 times as wide"


@pytest.mark.parametrize(
    ("tested", "said"),
    [
        ({"unit_of_analysis": "unit", "design_effect": 5.29, "widening": 2.3}, WIDENED),
        ({"unit_of_analysis": "unit", "design_effect": 1.0, "widening": 1.0}, None),
        ({"unit_of_analysis": "unit"}, None),
        ({"unit_of_analysis": "request"}, "assumes independent requests"),
    ],
)
def test_status_detail_says_why_a_guardrails_interval_is_as_wide_as_it_is(
    tested: dict[str, Any], said: str | None
) -> None:
    """Under the guardrail's bounds: how much units widen its interval and the units that
    costs the stage, or that it assumes independent requests (a Prometheus guardrail)."""
    error_rate = {"delta": 0.005, "lower": -0.01, "upper": 0.02, "tolerance": 0.0, **tested}
    guardrails = {"error_rate": error_rate, "latency_p95": "insufficient data"}
    evidence = {**rollout().evidence.wire(), "guardrails": guardrails}
    text = status_detail(rollout(evidence=evidence)).splitlines()
    at = next(i for i, line in enumerate(text) if line.startswith("  guardrail error_rate:"))
    below = text[at + 1]
    if said is None:
        assert below.startswith("  guardrail latency_p95:")
    else:
        assert below.startswith(f"    {said}")
    if said == WIDENED:
        assert below.endswith(
            "the stage needs about 5.3 times as many units to see the same difference"
        )


DOMINANT = {"arm": "treatment", "events_share": 0.41, "variance_share": 0.93}
BOT = (
    "    one bucket of units in treatment sent 41% of its events and carries 93% of its"
    " variance: most likely one unit (a bot, a broken account) decides this metric"
)


@pytest.mark.parametrize(
    ("tested", "below"),
    [
        # Widened and decided by one bucket: both said, the widening first.
        (
            {"unit_of_analysis": "unit", "design_effect": 5.29, "widening": 2.3,
             "dominant": DOMINANT},
            [f"    {WIDENED}", BOT],
        ),
        # A bucket named with no widening to speak of (read back from an older gate): named.
        ({"unit_of_analysis": "unit", "dominant": DOMINANT}, [BOT]),
        # None named: nothing more than the widening.
        ({"unit_of_analysis": "unit", "design_effect": 5.29, "widening": 2.3}, [f"    {WIDENED}"]),
    ],
)  # fmt: skip
def test_status_detail_names_the_unit_that_decides_a_guardrail(
    tested: dict[str, Any], below: list[str]
) -> None:
    """Under the guardrail's bounds, after its widening: the bucket of units that carries
    most of its variance, in the gate's words, and nothing under the other guardrails."""
    error_rate = {"delta": 0.005, "lower": -0.01, "upper": 0.02, "tolerance": 0.0, **tested}
    guardrails = {"error_rate": error_rate, "latency_p95": "insufficient data"}
    evidence = {**rollout().evidence.wire(), "guardrails": guardrails}
    text = status_detail(rollout(evidence=evidence)).splitlines()
    at = next(i for i, line in enumerate(text) if line.startswith("  guardrail error_rate:"))
    shown = [line[: len(want)] for line, want in zip(text[at + 1 :], below, strict=False)]
    assert shown == below
    assert text[at + 1 + len(below)].startswith("  guardrail latency_p95:")
    assert sum("decides this metric" in line for line in text) == (BOT in below)


def test_status_detail_shows_the_error_budget_in_one_line() -> None:
    budget = {"holds": False, "reason": "r", "above": 14.4, "windows": {"5m": 1.25}}
    text = status_detail(rollout(evidence={"error_budget": budget}))
    assert (
        "budget:      burn rate 5m 1.2 (holds above 14.4 over every window):"
        " forward moves may go on"
    ) in text
    assert "budget:" not in status_detail(rollout())


NEEDS = {
    "min_time_left_s": 150.0,
    "units": {"needed": 300, "fewest": 153, "treatment": 153, "control": 171},
    "partitions": None,
    "untested": ["error_rate not yet tested: 12 of 150 events in control"],
    "empty_ring": None,
    "to_detect": None,
    "lines": [
        "minimum stage time: 2 min 30 s left",
        "units per arm: 153 of 300 (treatment 153, control 171)",
        "error_rate not yet tested: 12 of 150 events in control",
    ],
}


def test_status_detail_lists_what_the_stage_still_needs() -> None:
    detail = status_detail(rollout(needs=NEEDS)).splitlines()
    first = detail.index("still needs: minimum stage time: 2 min 30 s left")
    assert detail[first + 1 : first + 3] == [
        "             units per arm: 153 of 300 (treatment 153, control 171)",
        "             error_rate not yet tested: 12 of 150 events in control",
    ]
    assert "still needs:" not in status_detail(rollout())  # an older controller served none


def test_status_table_says_what_each_waiting_stage_needs_in_one_line() -> None:
    lines = status_table([rollout(needs=NEEDS), rollout(flag="cart")]).splitlines()
    assert lines[3:] == [
        "",
        "checkout still needs: minimum stage time: 2 min 30 s left; units per arm: 153 of 300"
        " (treatment 153, control 171); error_rate not yet tested: 12 of 150 events in control",
    ]


def test_a_sample_ratio_of_0_against_0_reads_no_units_yet_not_ok() -> None:
    srm = {"observed_treatment": 0, "observed_control": 0, "expected_treatment": 0.0,
           "chi2": 0.0, "sequential_p_value": 1.0, "flagged": False}  # fmt: skip
    empty = {"treatment": {"units": 0}, "control": {"units": 0}}
    text = status_detail(rollout(evidence={"arms": empty, "srm": srm}))
    assert "sample ratio: chi2 0, sequential p 1 (no units yet)" in text
    assert "(ok)" not in text
