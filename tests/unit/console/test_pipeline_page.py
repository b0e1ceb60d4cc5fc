"""The console's pipeline page: each environment in order, the gate before each, approvals."""

from __future__ import annotations

import copy
import re
from typing import Any

from controller.console.pages import rollout_list
from controller.console.pipeline import pipeline_detail
from controller.core.reading import PipelineRun
from tests.unit.console.test_console_render import row_of
from tests.unit.ctl.test_pipeline_cli import STOPPED, VIEW

HOSTILE = '<img src=x onerror="alert(1)"> & "quotes"'


def page(view: dict[str, Any]) -> str:
    """The page of the run ``view`` serves, read as the daemon builds it: into its model."""
    return pipeline_detail(PipelineRun.model_validate(view))


def keyed(view: dict[str, Any]) -> dict[str, Any]:
    shown = copy.deepcopy(view)
    for step, key, started in zip(
        shown["environments"],
        ("checkout@dev", "checkout@staging", "checkout"),
        ("r-dev", "r-staging", None),
        strict=True,
    ):
        step.update(key=key, rollout_id=started, plan="fast")
    return shown


def test_each_environment_in_order_with_its_state_and_link() -> None:
    html = page(keyed(VIEW))
    assert re.findall(r'data-environment="(\w+)" data-status="(\w+)"', html) == [
        ("dev", "completed"),
        ("staging", "running"),
        ("production", "pending"),
    ]
    # started environments link to their rollout page; one not started has none to link to
    assert '<a href="/ui/rollouts/checkout%40dev">dev</a>' in html
    assert '<a href="/ui/rollouts/checkout%40staging">staging</a>' in html
    assert "<h3>production</h3>" in html
    assert "running at stage 1/2 (5%), serving 5%" in html


def test_the_gate_before_each_and_what_the_next_waits_for() -> None:
    html = page(keyed(VIEW))
    gates = re.findall(r'data-before="(\w+)" data-state="(\w+)"><p>([^<]*)</p>', html)
    assert gates == [
        ("staging", "passed", "Before staging: dev completes, then soak 1:00:00"),
        (
            "production",
            "next",
            "Before production: staging completes, then approvals: 2 from approver, 1 from"
            " security",
        ),
    ]
    assert "<li>staging to complete (it is running)</li>" in html
    assert "production waits for staging to complete" in html


def test_approvals_say_who_when_and_how_many_are_missing() -> None:
    html = page(keyed(VIEW))
    assert '<section class="approvals" data-missing="2">' in html
    assert '<p class="role" data-role="approver">approver: 1 of 2</p>' in html
    assert '<p class="role" data-role="security">security: 0 of 1</p>' in html
    assert (
        '<li class="approval" data-key="ana-1">ana (key ana-1, approver) at'
        " <time>2026-11-23T12:30:00Z</time></li>"
    ) in html
    assert "Still to approve: 1 more from approver, 1 more from security" in html


def test_outside_text_is_escaped_and_a_stopped_run_says_where() -> None:
    stopped = keyed(STOPPED)
    stopped["environments"][1]["ending"] = HOSTILE
    html = page(stopped)
    assert "<img" not in html
    assert "&lt;img src=x" in html
    assert 'data-phase="stopped">Stopped at staging: nothing more starts</p>' in html


def test_the_list_links_a_flags_rollouts_in_every_environment_to_its_pipeline() -> None:
    rows = [row_of("healthy", flag=flag) for flag in ("checkout@staging", "checkout", "search")]
    html = rollout_list(rows, [], pipelines={"checkout"})
    links = re.findall(r'<a class="pipeline-link" href="([^"]+)">', html)
    assert links == ["/ui/pipelines/checkout", "/ui/pipelines/checkout"]


def test_the_last_environment_running_is_named_as_such() -> None:
    last = keyed(VIEW)
    for step in last["environments"]:
        step["status"] = "completed"
    last["environments"][2]["status"] = "running"
    last["next"] = None
    assert "Running: production runs, the last environment to start</p>" in page(last)
