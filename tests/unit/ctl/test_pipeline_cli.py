"""``rolloutctl pipeline``: the command it signs, and the status it prints."""

from __future__ import annotations

from typing import Any

import pytest

from controller.ctl.app import build_parser
from controller.ctl.operate.pipelines import command_of, status_text
from controller.ctl.terminal import UsageError

VIEW: dict[str, Any] = {
    "run_id": "r1",
    "pipeline": "release",
    "flag": "checkout",
    "phase": "running",
    "stopped_at": None,
    "environments": [
        {"environment": "dev", "status": "completed", "rollout": None, "ending": "completed"},
        {
            "environment": "staging",
            "status": "running",
            "rollout": {"phase": "running", "stage": 0, "percent": 5.0},
            "ending": "",
        },
        {
            "environment": "production",
            "status": "pending",
            "rollout": None,
            "ending": "",
            "approvals": {
                "missing": {"approver": 1},
                "approved": {"approver": ["ana (ana-1)"]},
                "summary": "1 more from approver",
            },
        },
    ],
    "next": {
        "environment": "production",
        "open": False,
        "waiting_for": ["staging to complete (it is running)", "approvals: 1 more from approver"],
    },
}


def test_the_status_shows_each_environment_what_gates_the_next_and_who_approved() -> None:
    assert status_text(VIEW).splitlines() == [
        "pipeline release for checkout (run r1): running",
        "  dev          completed: completed",
        "  staging      running, running at 5%",
        "  production   pending",
        "               approvals: 1 more from approver (approver: ana (ana-1))",
        "next: production waits for: staging to complete (it is running);"
        " approvals: 1 more from approver",
    ]


def test_a_pipeline_command_is_checked_against_the_contract() -> None:
    command = command_of("checkout", {"name": "p"}, actor="ana", key_id="ops-1")
    assert (command["type"], command["action"], command["flag"]) == (
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
