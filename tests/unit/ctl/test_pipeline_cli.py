"""``rolloutctl pipeline``: the command it signs, and the status it prints."""

from __future__ import annotations

from typing import Any

import pytest

from controller.ctl.app import build_parser
from controller.ctl.operate.pipelines import command_of, status_text
from controller.ctl.terminal import UsageError

APPROVALS: dict[str, Any] = {
    "needed": {"approver": 2, "security": 1},
    "missing": {"approver": 1, "security": 1},
    "approved": {"approver": ["ana (ana-1)"], "security": []},
    "given": [
        {"operator": "ana", "key_id": "ana-1", "role": "approver", "at": "2026-11-23T12:30:00Z"}
    ],
    "expires_after": "1 day, 0:00:00",
    "summary": "1 more from approver, 1 more from security",
}
DONE = {"phase": "completed", "stage": 1, "stages": 2, "label": "stage 2/2 (100%)", "percent": 100}
RUNNING = {"phase": "running", "stage": 0, "stages": 2, "label": "stage 1/2 (5%)", "percent": 5.0}
VIEW: dict[str, Any] = {
    "run_id": "r1",
    "pipeline": "release",
    "flag": "checkout",
    "phase": "running",
    "stopped_at": None,
    "environments": [
        {"environment": "dev", "status": "completed", "rollout": DONE, "ending": "", "gate": None},
        {
            "environment": "staging",
            "status": "running",
            "rollout": RUNNING,
            "ending": "",
            "gate": "soak 1:00:00",
        },
        {
            "environment": "production",
            "status": "pending",
            "rollout": None,
            "ending": "",
            "gate": "approvals: 2 from approver, 1 from security",
            "approvals": APPROVALS,
        },
    ],
    "next": {
        "environment": "production",
        "open": False,
        "waiting_for": ["staging to complete (it is running)", "approvals: 1 more from approver"],
    },
}
STOPPED: dict[str, Any] = {
    **VIEW,
    "phase": "stopped",
    "stopped_at": "staging",
    "environments": [
        VIEW["environments"][0],
        {
            **VIEW["environments"][1],
            "status": "rolled_back",
            "rollout": {**RUNNING, "phase": "rolled_back", "percent": 0.0},
            "ending": "error rate +28 pp",
        },
        {**VIEW["environments"][2], "approvals": None},
    ],
    "next": None,
}
OLDER: dict[str, Any] = {  # a controller before "needed", "given", "gate" and "label"
    **VIEW,
    "environments": [
        {"environment": "staging", "status": "running", "rollout": {**RUNNING, "label": None}},
        {
            "environment": "production",
            "status": "pending",
            "rollout": None,
            "approvals": {
                "missing": {"approver": 1},
                "approved": {"approver": ["ana (ana-1)"]},
                "summary": "1 more from approver",
            },
        },
    ],
    "next": {"environment": "production", "open": True, "waiting_for": []},
}
CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "running, production waiting for completion and approvals": (
        VIEW,
        [
            "pipeline release for checkout (run r1): running",
            "  dev          completed: rollout completed at stage 2/2 (100%), serving 100%",
            "  staging      running: rollout running at stage 1/2 (5%), serving 5%;"
            " gate: soak 1:00:00",
            "  production   pending; gate: approvals: 2 from approver, 1 from security",
            "               approvals approver: 1 of 2: ana (key ana-1) at 2026-11-23T12:30:00Z",
            "               approvals security: 0 of 1",
            "               still to approve: 1 more from approver, 1 more from security",
            "next: production waits for: staging to complete (it is running);"
            " approvals: 1 more from approver",
        ],
    ),
    "stopped at staging": (
        STOPPED,
        [
            "pipeline release for checkout (run r1): stopped at staging",
            "  dev          completed: rollout completed at stage 2/2 (100%), serving 100%",
            "  staging      rolled_back: rollout rolled_back at stage 1/2 (5%), serving 0%"
            " (error rate +28 pp); gate: soak 1:00:00",
            "  production   pending; gate: approvals: 2 from approver, 1 from security",
        ],
    ),
    "an older controller's answer": (
        OLDER,
        [
            "pipeline release for checkout (run r1): running",
            "  staging      running: rollout running, serving 5%",
            "  production   pending",
            "               approved: approver: ana (ana-1)",
            "               still to approve: 1 more from approver",
            "next: production may start now",
        ],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_the_status_shows_each_environment_what_gates_the_next_and_who_approved(
    case: str,
) -> None:
    view, lines = CASES[case]
    assert status_text(view).splitlines() == lines


def test_a_pipeline_command_is_checked_against_the_contract() -> None:
    command = command_of("checkout", {"name": "p"}, actor="ana", key_id="ops-1")
    assert (command.type, command.action, command.flag) == (
        "pipeline",
        "start",
        "checkout",
    )
    with pytest.raises(UsageError, match="flag"):
        command_of("checkout@staging", {"name": "p"}, actor="ana", key_id="ops-1")


def test_the_parser_knows_start_and_status() -> None:
    args = build_parser().parse_args(["pipeline", "start", "checkout", "--pipeline", "p.yaml"])
    assert (args.command, args.pipeline_command, args.flag) == ("pipeline", "start", "checkout")
    assert (
        build_parser().parse_args(["pipeline", "status", "checkout"]).pipeline_command == "status"
    )
