"""Nothing but CHANGELOG.md cites the project's own issue numbers.

A reader of the code, the docs or the tests cannot resolve ``(#40)`` or
``since #39``: what changed is said in words, and history is kept in
CHANGELOG.md and the commit log. Another project's issue keeps its name
(``pytest-xdist#1386``) and stays, as do hex colours, HTML character
references and markdown headings.

Every file git lists (tracked, or new and not ignored) is read, except
CHANGELOG.md and this file, whose table holds examples of what is refused.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().relative_to(ROOT).as_posix()

# ``#`` and digits standing alone: not after a word, a path, a project's name
# (``-``), ``&`` (``&#39;``) or a CSS or attribute value (``color: #333``).
ISSUE = re.compile(r"(?<![\w/&:=\"'-])(?<!: )(?<!=\")(?<!=')#\d{1,5}(?![\w-])")

# Test files that still cite issue numbers; trim it as each is cleaned, until it is empty.
TESTS_STILL_CITING = frozenset(
    {
        "tests/dripping.py",
        "tests/integration/test_aggregate_reads.py",
        "tests/integration/test_both_arms.py",
        "tests/integration/test_conversion_names.py",
        "tests/integration/test_ctl_outage.py",
        "tests/integration/test_dependency_errors.py",
        "tests/integration/test_draft_model.py",
        "tests/integration/test_ingest_cohorts.py",
        "tests/integration/test_ingest_command_roles.py",
        "tests/integration/test_narrative_model.py",
        "tests/integration/test_otlp_kafka.py",
        "tests/integration/test_otlp_kafka_daemon.py",
        "tests/integration/test_reads.py",
        "tests/integration/test_signed_flags.py",
        "tests/integration/test_source_store.py",
        "tests/integration/test_stop_rebalance.py",
        "tests/integration/test_unleash_constraints.py",
        "tests/otlp_exports.py",
        "tests/otlp_kafka.py",
        "tests/prometheus_kit.py",
        "tests/prometheus_sim.py",
        "tests/scenarios/test_app_key_environments.py",
        "tests/scenarios/test_broker_lost_data.py",
        "tests/scenarios/test_demo.py",
        "tests/scenarios/test_forged_flag_state.py",
        "tests/scenarios/test_health_actions.py",
        "tests/scenarios/test_named_conversions.py",
        "tests/scenarios/test_otel_apps.py",
        "tests/scenarios/test_pipeline_refusals.py",
        "tests/scenarios/test_prometheus_gates.py",
        "tests/scenarios/test_read_flood.py",
        "tests/scenarios/test_report.py",
        "tests/scenarios/test_rings.py",
        "tests/scenarios/test_scheduling.py",
        "tests/scenarios/test_segment_rings.py",
        "tests/scenarios/test_small_arms.py",
        "tests/scenarios/test_unleash_rings.py",
        "tests/scenarios/test_unleash_safety.py",
        "tests/scenarios/test_unleash_segment_rings.py",
        "tests/scenarios/test_untested_stages.py",
        "tests/scenarios/test_window_clock.py",
        "tests/simulation.py",
        "tests/unit/adapters/test_read_access.py",
        "tests/unit/adapters/test_read_snapshot.py",
        "tests/unit/core/drafting/test_drafting.py",
        "tests/unit/core/drafting/test_ring_form.py",
        "tests/unit/core/machine/test_gate_floors.py",
        "tests/unit/core/machine/test_gate_named.py",
        "tests/unit/core/machine/test_health_actions.py",
        "tests/unit/core/machine/test_machine_windows.py",
        "tests/unit/core/machine/test_scheduling.py",
        "tests/unit/core/reading/test_named_wording.py",
        "tests/unit/core/rollouts/test_health_policy.py",
        "tests/unit/core/rollouts/test_next_move.py",
        "tests/unit/core/rollouts/test_plan_conversions.py",
        "tests/unit/core/rollouts/test_telemetry_plan.py",
        "tests/unit/core/rollouts/test_windows.py",
        "tests/unit/core/serving/test_backend_safety.py",
        "tests/unit/core/stats/test_named_conversions.py",
        "tests/unit/core/stats/test_quantile_bounds.py",
        "tests/unit/core/stats/test_ring_statistics.py",
        "tests/unit/core/stats/test_sourced_aa.py",
        "tests/unit/core/telemetry/test_aa_through_otlp.py",
        "tests/unit/core/trust/test_flag_signing.py",
        "tests/unit/core/wire/test_arm_values.py",
        "tests/unit/core/wire/test_rings.py",
        "tests/unit/core/wire/test_typed_values.py",
        "tests/unit/ctl/test_asking.py",
        "tests/unit/ctl/test_cli_spots.py",
        "tests/unit/ctl/test_diagnosis.py",
        "tests/unit/ctl/test_report_rings.py",
        "tests/unit/daemon/test_backend_metrics.py",
        "tests/unit/daemon/test_team_windows.py",
        "tests/unit/demo/test_devstack_ports.py",
        "tests/unit/house/test_deploy_files.py",
        "tests/unit/house/test_no_wall_clock_asserts.py",
        "tests/unit/kit/test_deadlines.py",
        "tests/unit/sdk/test_named_tracking.py",
        "tests/unit/sdk/test_sdk_packaging.py",
    }
)


def _cites(line: str) -> bool:
    return ISSUE.search(line) is not None


def _read(path: str) -> bool:
    """Whether ``path`` is read: CHANGELOG.md keeps its history, this file its examples."""
    return path not in {"CHANGELOG.md", HERE}


def _listed() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    return [p for p in listing.stdout.decode().split("\0") if p and _read(p)]


def _citations(root: Path, path: str) -> list[str]:
    file = root / path
    if file.is_symlink() or not file.is_file():
        return []
    data = file.read_bytes()
    if b"\0" in data:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return [f"{path}:{n}: {line.strip()}" for n, line in enumerate(lines, 1) if _cites(line)]


def _citing() -> dict[str, list[str]]:
    found = {path: _citations(ROOT, path) for path in _listed()}
    return {path: lines for path, lines in found.items() if lines}


@pytest.mark.parametrize(
    ("line", "cites"),
    [
        ("A drain gives up when the engine stops (#37).", True),
        ("until #40's last change it read", True),
        ("one pipeline of script calls since #39", True),
        ("The pure model of #42: environments", True),
        ("#28: release windows", True),
        ("(#14, #23)", True),
        ("see issue #1234", True),
        ("pytest-xdist#1386 is fixed", False),
        ("aiokafka#123", False),
        ("https://github.com/o/r/issues/12#issuecomment-3", False),
        ("docs/rollouts.md#40", False),
        ("color:#ff00aa; fill: #0969da", False),
        ("color:#333", False),
        ("color: #000;", False),
        ('<rect fill="#123"/>', False),
        ("it&#39;s", False),
        ("## Heading", False),
        ("# 40 retries at most", False),
        ("x = y  # noqa", False),
    ],
)
def test_what_reads_as_an_issue_number(line: str, cites: bool) -> None:
    assert _cites(line) is cites


@pytest.mark.parametrize(
    ("path", "read"),
    [
        ("CHANGELOG.md", False),
        (HERE, False),
        ("docs/rollouts.md", True),
        ("docs/CHANGELOG.md", True),
        ("controller/core/machine/gate.py", True),
        ("tests/unit/test_cli.py", True),
    ],
)
def test_which_files_are_read(path: str, read: bool) -> None:
    assert _read(path) is read


def test_git_lists_the_files_to_read() -> None:
    listed = _listed()
    assert "controller/__init__.py" in listed
    assert "docs/index.md" in listed


def test_a_citation_is_found_with_its_place(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\nKept since #39.\ncolor: #000;\n")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\0 (#40)")
    assert _citations(tmp_path, "a.md") == ["a.md:3: Kept since #39."]
    assert _citations(tmp_path, "b.png") == []
    assert _citations(tmp_path, "missing.md") == []


def test_nothing_outside_the_tests_cites_an_issue_number() -> None:
    citing = _citing()
    lines = [
        line for path, found in citing.items() if not path.startswith("tests/") for line in found
    ]
    assert lines == [], "say what changed in words; history is in CHANGELOG.md"


def test_the_tests_still_citing_issue_numbers_only_shrink() -> None:
    citing = {path for path in _citing() if path.startswith("tests/")}
    assert sorted(citing - TESTS_STILL_CITING) == [], "a test file newly cites an issue number"
    assert sorted(TESTS_STILL_CITING - citing) == [], "cleaned: remove it from TESTS_STILL_CITING"
