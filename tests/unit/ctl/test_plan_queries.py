"""``rolloutctl plan validate`` on a plan that reads Prometheus: templates refused with their
field, and a flag key built to inject PromQL refused before anything is sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.ctl.app import main
from controller.ctl.exits import EXIT_CONFIG

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "plans" / "prometheus.yaml"


@pytest.mark.parametrize(
    "flag",
    [
        'checkout"} or vector(1) or {a="',
        "checkout'} or on() vector(1)",
        "checkout\\",
        "checkout flow",
    ],
)
def test_a_flag_key_built_to_inject_promql_is_refused(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "validate", "--json", "--flag", flag, str(EXAMPLE)]) == EXIT_CONFIG
    shown = json.loads(capsys.readouterr().out)
    assert shown["valid"] is False
    assert [f["field"] for f in shown["findings"] if f["severity"] == "error"] == ["--flag"]
    assert "cannot be used in a query" in shown["error"]


def test_a_safe_flag_key_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "validate", "--flag", "checkout.new-flow", str(EXAMPLE)]) == 0
    assert "valid plan 'prometheus'" in capsys.readouterr().out


def test_an_unknown_placeholder_is_refused_with_its_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.yaml"
    text = EXAMPLE.read_text(encoding="utf-8").replace("{{arm}}", "{{variant}}", 1)
    plan.write_text(text, encoding="utf-8")
    assert main(["plan", "validate", str(plan)]) == EXIT_CONFIG
    out = capsys.readouterr().out
    assert "guardrails.0.prometheus.count: Value error, unknown placeholder '{{variant}}'" in out
