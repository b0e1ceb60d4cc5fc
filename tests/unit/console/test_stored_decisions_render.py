"""Every decision stored before evidence was typed still renders in the console and the report.

The stored evidence is the one kept in the tests' fixtures: ``gate_shapes.json``
(what each kind of gate published while evidence was an open object) and
``decision_shapes.json`` (the first decision of each producer's shape). Each is
wrapped in a decision record as the decisions topic and the gate history hold it
(JSON bytes), read back by the one tolerant reader the product uses at the edge
(:func:`controller.core.wire.messages.decision_or_alert`), and drawn by the
console's rollout page and by ``rolloutctl report``.

An evidence of an unknown future shape, or with a part of the wrong shape, is
read by the same reader, which leaves out what does not fit: the last test here
draws such a decision in both. The report's own cases of odd evidence are in
:func:`tests.unit.ctl.report.test_report.test_odd_evidence_costs_a_blank_never_the_report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from controller.console.decisions import MAX_EVIDENCE_CHARS
from controller.console.pages import esc
from controller.console.rollout import RolloutPage, rollout_detail
from controller.core.wire.messages import Decision, decision_or_alert
from controller.ctl.report.model import Report
from controller.ctl.report.render import html_page, markdown
from controller.ctl.report.report import from_served
from tests.unit.console.test_console_render import EMPTY, status_of
from tests.unit.ctl.report import test_report as report_case

UNIT = Path(__file__).parents[1]
GATES: dict[str, dict[str, Any]] = orjson.loads(
    (UNIT / "core/machine/gate/gate_shapes.json").read_bytes()
)
DECISIONS: dict[str, dict[str, Any]] = orjson.loads(
    (UNIT / "core/machine/decision_shapes.json").read_bytes()
)
KIND = {"release": "pipeline", "ingest": "ingest", "app_key": "app_key"}
"""The decision kind of each producer whose evidence is not a rollout's own."""


def kind_of(producer: str, evidence: dict[str, Any]) -> str:
    if producer in KIND:
        return KIND[producer]
    return "command" if "actor" in evidence else "gate"


STORED: dict[str, tuple[str, dict[str, Any]]] = {
    **{f"gate_shapes/{name}": ("gate", evidence) for name, evidence in GATES.items()},
    **{
        f"decision_shapes/{name}": (kind_of(name.split("/")[0], evidence), evidence)
        for name, evidence in DECISIONS.items()
    },
}


def index_of(evidence: object) -> int:
    """The stage a stored evidence says it was decided at; the first when it says none."""
    at = evidence.get("at_stage") if isinstance(evidence, dict) else None
    return at["index"] if isinstance(at, dict) else 0


def stored(kind: str, evidence: object) -> bytes:
    """A decision record with ``evidence`` as the decisions topic and the history hold it:
    the advance out of the stage the evidence was decided at."""
    at = index_of(evidence)
    made = report_case.decision("10:00:30", "advance", at + 1, at, kind=kind)
    return orjson.dumps({**made, "evidence": evidence})


def read_back(raw: bytes) -> Decision:
    read = decision_or_alert(orjson.loads(raw))
    assert isinstance(read, Decision)
    return read


def console(decision: Decision) -> str:
    return rollout_detail(RolloutPage(status_of(), EMPTY, [decision]))


REPORTED = {**report_case.STATUS, "phase": "running", "stage": 4, "percent": 100.0}
"""A rollout past every stage a stored decision was taken at: each such stage has ended."""


def report(raw: bytes) -> Report:
    """The report of a rollout started at the stored decision's stage, then that decision."""
    decision = orjson.loads(raw)
    at = index_of(decision["evidence"])
    start = report_case.START | {"stage": at}
    start["evidence"] = start["evidence"] | {"at_stage": report_case.at(at)}
    messages = [start, decision]
    return from_served(REPORTED, messages, None, report_case.NOW)


def report_witnesses(kind: str, evidence: dict[str, Any]) -> list[str]:
    """Text the report's markdown shows only because ``evidence`` carried it."""
    shown = [
        f"| {name} | {arm['units']:,} |"
        for name, arm in (evidence.get("arms") or {}).items()
        if isinstance(arm, dict) and "units" in arm
    ]
    shown += [f"| {name} |" for name in evidence.get("guardrails") or {}]
    if "policy" in evidence:
        shown.append(f"| {evidence['policy']['trigger']} |")
    if kind == "command" and isinstance(evidence.get("actor"), str) and evidence["actor"]:
        shown.append(f"operator {evidence['actor']}")
    if isinstance(evidence.get("at_stage"), dict):
        shown.append(f"| {evidence['at_stage']['label']} | advance |")
    return shown


@pytest.mark.parametrize("name", list(STORED))
def test_the_reader_keeps_every_stored_evidence_whole(name: str) -> None:
    kind, evidence = STORED[name]
    decision = read_back(stored(kind, evidence))
    assert decision.evidence.wire() == evidence


@pytest.mark.parametrize("name", list(STORED))
def test_the_console_shows_every_stored_evidence_as_published(name: str) -> None:
    kind, evidence = STORED[name]
    page = console(read_back(stored(kind, evidence)))
    written = orjson.dumps(evidence, option=orjson.OPT_INDENT_2).decode()[:MAX_EVIDENCE_CHARS]
    assert 'data-action="advance"' in page
    assert esc(written) in page
    for arm, counts in (evidence.get("arms") or {}).items():
        assert esc(f'"{arm}": {{\n      "units": {counts["units"]},') in page


@pytest.mark.parametrize("name", list(STORED))
def test_the_report_shows_every_stored_evidence(name: str) -> None:
    kind, evidence = STORED[name]
    made = report(stored(kind, evidence))
    text, page = markdown(made), html_page(made)
    assert [d.action for d in made.decisions] == ["start", "advance"]
    assert not any("contract" in note for note in made.notes)
    assert page
    for witness in report_witnesses(kind, evidence):
        assert witness in text


def test_every_gate_shape_has_something_of_its_evidence_in_the_report() -> None:
    assert all(report_witnesses("gate", evidence) for evidence in GATES.values())


FUTURE = {
    **GATES["regression"],
    "arms": {"treatment": {"units": "many"}, **GATES["regression"]["arms"]},
    "srm": ["not", "an", "object"],
    "guardrails": "all fine",
    "quantum_ledger": {"entangled": True},
}
"""A regression's evidence with a part of a shape to come and parts of the wrong shape."""


def test_an_evidence_of_an_unknown_shape_renders_without_its_odd_parts() -> None:
    decision = read_back(stored("gate", FUTURE))
    written: dict[str, Any] = decision.evidence.wire()
    assert "quantum_ledger" not in written
    assert "srm" not in written
    assert "guardrails" not in written
    assert written["arms"]["control"] == GATES["regression"]["arms"]["control"]
    page = console(decision)
    assert "quantum_ledger" not in page
    assert esc('"breach": "error_rate"') in page
    text = markdown(report(stored("gate", FUTURE)))
    assert "| control | 10,000 |" in text
    assert "quantum_ledger" not in text
