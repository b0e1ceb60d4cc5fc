"""``rolloutctl plan validate --prometheus URL`` against a real Prometheus and a closed port:
the server parses the plan's queries, and a server that cannot be asked fails the check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.ctl.app import main
from controller.ctl.exits import EXIT_CONFIG
from tests.support.backing.prometheus_kit import PrometheusServer
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration]

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "plans" / "prometheus.yaml"
BROKEN = "sum(increase(http_requests_total[60s]]))"


@pytest.fixture(scope="module")
def prometheus(
    prometheus_server_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    server = PrometheusServer(
        tmp_path_factory.mktemp("prometheus"), [], binary=prometheus_server_binary
    )
    server.start()
    try:
        yield server
    finally:
        server.kill()


def broken_plan(tmp_path: Path) -> Path:
    """The example plan, its limit's query broken."""
    text = EXAMPLE.read_text(encoding="utf-8")
    head, _, _ = text.partition("      query: >-")
    path = tmp_path / "broken.yaml"
    path.write_text(f"{head}      query: '{BROKEN}'\n", encoding="utf-8")
    return path


def validated(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(["plan", "validate", "--json", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_a_real_prometheus_parses_the_queries_of_a_sound_plan(
    prometheus: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, shown = validated(capsys, "--prometheus", prometheus.url, str(EXAMPLE))
    assert (code, shown["valid"], shown["findings"]) == (0, True, [])


def test_a_real_prometheus_refuses_a_broken_query_by_its_field(
    prometheus: PrometheusServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, shown = validated(capsys, "--prometheus", prometheus.url, str(broken_plan(tmp_path)))
    assert (code, shown["valid"]) == (EXIT_CONFIG, False)
    findings = shown["findings"]
    assert isinstance(findings, list)
    assert [(f["severity"], f["field"]) for f in findings] == [
        ("error", "limits.prometheus[0].query")
    ]
    assert "Prometheus refuses it" in findings[0]["message"]


def test_an_unreachable_server_fails_the_check_it_was_asked_for(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given a port nothing listens on, and a plan whose query is broken
    closed = f"http://127.0.0.1:{free_port()}"
    code, shown = validated(capsys, "--prometheus", closed, str(broken_plan(tmp_path)))
    # Then the plan is not reported valid: the syntax was never checked
    assert (code, shown["valid"]) == (EXIT_CONFIG, False)
    assert f"not checked: {closed} gave no usable answer" in str(shown["error"])
    # ...and so is a sound plan: asking for the check and not getting it fails
    code, shown = validated(capsys, "--prometheus", closed, str(EXAMPLE))
    assert (code, shown["valid"]) == (EXIT_CONFIG, False)
