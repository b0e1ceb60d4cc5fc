"""``rolloutctl pipeline``: the command it signs, and the status it prints."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from controller.adapters import http_client
from controller.core.reading import PipelineRun
from controller.ctl import app
from controller.ctl.app import build_parser
from controller.ctl.operate.pipelines import command_of, status_text
from controller.ctl.usage import UsageError

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
STEP: dict[str, Any] = {  # what every step below has in common
    "key": None,
    "plan": "standard",
    "rollout_id": None,
    "started_at": None,
    "ended_at": None,
    "ending": "",
    "soak": None,
    "windows": 0,
}
VIEW: dict[str, Any] = {  # the run as GET /pipelines/{flag} serves it
    "run_id": "r1",
    "pipeline": "release",
    "flag": "checkout",
    "phase": "running",
    "stopped_at": None,
    "started_at": "2026-11-23T09:00:00+00:00",
    "updated_at": "2026-11-23T12:30:00+00:00",
    "applied": None,
    "environments": [
        {**STEP, "environment": "dev", "status": "completed", "rollout": DONE, "gate": None},
        {
            **STEP,
            "environment": "staging",
            "status": "running",
            "rollout": RUNNING,
            "soak": "1:00:00",
            "gate": "soak 1:00:00",
        },
        {
            **STEP,
            "environment": "production",
            "status": "pending",
            "rollout": None,
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
}


@pytest.mark.parametrize("case", CASES)
def test_the_status_shows_each_environment_what_gates_the_next_and_who_approved(
    case: str,
) -> None:
    view, lines = CASES[case]
    assert status_text(PipelineRun.model_validate(view)).splitlines() == lines


WRONG: dict[str, tuple[bytes, str]] = {
    # case: (the answer's body, what the error says)
    "no JSON": (b"<html>oops</html>", "answered with something other than JSON"),
    "no object": (b"[]", "served no pipeline run: the answer: Input should be"),
    "a field missing": (
        orjson.dumps({k: v for k, v in VIEW.items() if k != "environments"}),
        "served no pipeline run: environments: Field required",
    ),
    "a field of another type": (
        orjson.dumps({**VIEW, "next": {**VIEW["next"], "open": "maybe"}}),
        "served no pipeline run: next.open: Input should be a valid boolean",
    ),
    "an older controller's step, without its key and gate": (
        orjson.dumps({**VIEW, "environments": [{"environment": "dev", "status": "running"}]}),
        "served no pipeline run: environments.0.key: Field required",
    ),
}


@pytest.mark.parametrize("case", WRONG)
def test_an_answer_of_another_shape_is_an_error_that_says_so(
    case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body, said = WRONG[case]

    def get(url: str, **_: object) -> http_client.Answer:
        return http_client.Answer(200, {}, body.decode())

    monkeypatch.setattr(http_client, "get", get)
    assert app.main(["pipeline", "status", "checkout", "--url", "http://ctl"]) == 1
    err = capsys.readouterr().err
    assert "http://ctl/pipelines/checkout " in err
    assert said in err
    assert "Traceback" not in err


@pytest.mark.parametrize("json", [False, True])
def test_the_status_reads_the_served_run_once_and_prints_it(
    json: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served = orjson.dumps(VIEW)

    def get(url: str, **_: object) -> http_client.Answer:
        assert url == "http://ctl/pipelines/checkout"
        return http_client.Answer(200, {}, served.decode())

    monkeypatch.setattr(http_client, "get", get)
    argv = ["pipeline", "status", "checkout", "--url", "http://ctl"] + (["--json"] if json else [])
    assert app.main(argv) == 0
    out = capsys.readouterr().out
    if json:
        assert orjson.loads(out) == VIEW
    else:
        assert (
            out.splitlines() == CASES["running, production waiting for completion and approvals"][1]
        )


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


def test_status_passes_over_a_field_a_newer_controller_serves(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    newer = orjson.dumps({**VIEW, "stage": 2})

    def get(url: str, **_: object) -> http_client.Answer:
        return http_client.Answer(200, {}, newer.decode())

    monkeypatch.setattr(http_client, "get", get)
    assert app.main(["pipeline", "status", "checkout", "--url", "http://ctl"]) == 0
    assert "pipeline release for checkout (run r1): running" in capsys.readouterr().out
