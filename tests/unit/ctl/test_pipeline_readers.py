"""Every reader of ``GET /pipelines/{flag}`` on the rolloutctl side reads the answer once into
its model, where it comes in: the report across environments, the MCP server and
``rolloutctl apply``'s view of the live objects. An answer of another shape is an error that
says which field, never a crash further in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import orjson
import pytest
from mcp import Client

from controller.adapters import http_client
from controller.core.common import ControllerError
from controller.core.reading import PipelineRun
from controller.ctl.agent import tools
from controller.ctl.agent.reading import Reader
from controller.ctl.gitops.desired import Desired
from controller.ctl.gitops.diffing import Live
from controller.ctl.gitops.live import read_live
from controller.ctl.report import reporting
from controller.settings import KafkaSettings, TopicSettings
from tests.unit.ctl.test_pipeline_cli import VIEW

BASE = "http://ctl"
WRONG = orjson.dumps({**VIEW, "phase": "paused"})
"""A run in a phase no run has: the field is named."""


def served(body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller at :data:`BASE` answers ``body`` for the pipeline, no rollout else."""

    def get(url: str, **_: object) -> http_client.Answer:
        if url == f"{BASE}/pipelines/checkout":
            return http_client.Answer(200, {}, body.decode())
        if url == f"{BASE}/rollouts":
            return http_client.Answer(200, {}, '{"rollouts": []}')
        return http_client.Answer(404, {}, '{"error": "none"}')

    monkeypatch.setattr(http_client, "get", get)


def _report() -> object:
    return reporting._sections(BASE, "checkout", None, timeout_s=5)[1]


def _agent() -> object:
    return Reader(BASE, KafkaSettings(), TopicSettings(), timeout_s=5).pipeline("checkout")


def _apply() -> Live | None:
    desired = Desired(kind="pipeline", name="checkout", body=cast(Any, None), source="r.yaml")
    return read_live(BASE, [desired])["pipeline checkout"]


READERS: dict[str, Callable[[], object]] = {
    "rolloutctl report": _report,
    "the MCP server": _agent,
    "rolloutctl apply": _apply,
}


@pytest.mark.parametrize("reader", READERS)
def test_a_reader_given_an_answer_of_another_shape_says_so(
    reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    served(WRONG, monkeypatch)
    with pytest.raises(ControllerError) as raised:
        READERS[reader]()
    said = str(raised.value)
    assert "/pipelines/checkout" in said
    assert "phase" in said
    assert "'running', 'completed' or 'stopped'" in said


@pytest.mark.parametrize("reader", ["rolloutctl report", "the MCP server"])
def test_a_reader_reads_the_run_into_its_model(
    reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    served(orjson.dumps(VIEW), monkeypatch)
    assert READERS[reader]() == PipelineRun.model_validate(VIEW)


@pytest.mark.parametrize("reader", ["rolloutctl report", "the MCP server"])
def test_a_reader_passes_over_fields_a_newer_controller_serves(
    reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = [{**step, "added_later": {"x": 1}} for step in VIEW["environments"]]
    newer = {**VIEW, "environments": steps, "also_added": True}
    served(orjson.dumps(newer), monkeypatch)
    assert READERS[reader]() == PipelineRun.model_validate(VIEW)


def test_apply_sees_the_live_run_and_its_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    served(orjson.dumps({**VIEW, "applied": "ab" * 32}), monkeypatch)
    live = _apply()
    assert live is not None
    assert (live.state, live.running) == ("pipeline release running", True)


async def test_the_mcp_tool_answers_the_run_as_served_or_says_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = Reader(BASE, KafkaSettings(), TopicSettings(), timeout_s=5)
    served(orjson.dumps(VIEW), monkeypatch)
    async with Client(tools.build(reader)) as client:
        answer = await client.call_tool("pipeline_status", {"flag": "checkout"})
    assert not answer.is_error
    assert answer.structured_content == VIEW
    served(WRONG, monkeypatch)
    async with Client(tools.build(reader)) as client:
        wrong = await client.call_tool("pipeline_status", {"flag": "checkout"})
    assert wrong.is_error
    assert "/pipelines/checkout served no PipelineRun: phase: Input should be" in str(wrong.content)
