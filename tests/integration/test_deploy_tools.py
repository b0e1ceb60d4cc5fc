"""The deployment kit passes the tools its users will run on it: Compose and promtool.

``tests/unit/test_deploy_files.py`` cross-checks the files against the code; these
tests hand the same files to the real tools, so a file that parses as YAML but
that Docker Compose or Prometheus would refuse fails here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "ops" / "prometheus"


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_compose_accepts_the_stack_as_written(compose_cli: list[str]) -> None:
    # Given docker-compose.yml, with none of the operator's secrets exported
    # When Docker Compose resolves it (no engine needed for `config`)
    result = _run([*compose_cli, "--file", "docker-compose.yml", "config", "--format", "json"])
    # Then it is valid, says nothing about it, and keeps every service we wrote
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    resolved: dict[str, Any] = json.loads(result.stdout)
    written = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert set(resolved["services"]) == set(written["services"])
    controller = resolved["services"]["controller"]
    assert controller["build"]["dockerfile"] == "Dockerfile"
    assert Path(controller["build"]["context"]) == ROOT
    assert set(controller["depends_on"]) == {"kafka-init", "redis"}


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(["check", "config", "prometheus.yml"], id="scrape-config"),
        pytest.param(["check", "rules", "alerts.yml"], id="alert-rules"),
        pytest.param(["test", "rules", "alerts.test.yml"], id="alert-rule-tests"),
    ],
)
def test_promtool_accepts_the_prometheus_files(promtool: str, check: list[str]) -> None:
    *verb, name = check
    result = _run([promtool, *verb, str(PROMETHEUS / name)])
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "SUCCESS" in result.stdout
