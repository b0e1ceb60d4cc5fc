"""``rolloutctl report --narrative`` against a model server on a socket: checked by sentence."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from controller.ctl.asking import Asking
from controller.ctl.report.narrating import facts, narrate
from controller.ctl.report.render import html_page, markdown
from controller.ctl.report.report import from_served
from controller.settings import LlmSettings
from tests.support.fake_model import FakeModel
from tests.unit.ctl.report.test_report import ADVANCE, NOW, ROLLBACK, START, STATUS

pytestmark = pytest.mark.integration


@pytest.fixture
async def server() -> AsyncIterator[FakeModel]:
    async with FakeModel() as fake:
        yield fake


def settings(fake: FakeModel, deadline: float = 5.0) -> Asking:
    return Asking(LlmSettings(base_url=fake.base_url, model="fake"), deadline)


async def test_a_narrative_whose_numbers_are_all_in_the_evidence_opens_the_report(
    server: FakeModel,
) -> None:
    report = from_served(STATUS, [START, ADVANCE, ROLLBACK], None, NOW)
    server.behaviour = "narrative"
    text, why = await narrate(report, settings(server))
    assert (text, why) == ("It was rolled back at stage 2/5 (5%) after 70 s.", "")
    # The model was shown the facts, each number as the report writes it
    shown = server.requests[-1]["messages"][-1]["content"]
    assert all(f"- {fact}" in shown for fact in facts(report))
    assert "stage 2/5 (5%), lasted 70 s, ended by rollback." in shown
    report.narrative, report.narrated_by = text, "fake"
    assert "## In short" in markdown(report)
    assert "It was rolled back at stage 2/5 (5%) after 70 s." in html_page(report)


@pytest.mark.parametrize(
    ("behaviour", "why"),
    [
        ("narrative_invented", "not in the evidence or cannot be checked (123456789)"),
        ("prose", "not JSON"),
        ("error500", "(setting llm.base_url): HTTP 500"),
        ("hang", "the model gave none: no answer within the 1 s deadline (--deadline"),
    ],
)
async def test_a_narrative_with_one_wrong_number_or_none_at_all_is_dropped(
    server: FakeModel, behaviour: str, why: str
) -> None:
    report = from_served(STATUS, [START, ADVANCE, ROLLBACK], None, NOW)
    server.behaviour = behaviour
    # Only the model that hangs is waited for by the short deadline; the others answer,
    # and a loaded machine may take a second to carry the answer.
    deadline = 1.0 if behaviour == "hang" else 30.0
    text, reason = await narrate(report, settings(server, deadline=deadline))
    assert text is None
    assert why in reason
    if behaviour == "error500":
        assert reason.startswith(f"the model gave none: model at {server.base_url} "), reason


async def test_a_sentence_with_a_number_the_check_cannot_read_is_dropped_and_counted(
    server: FakeModel,
) -> None:
    report = from_served(STATUS, [START, ADVANCE, ROLLBACK], None, NOW)
    server.behaviour = "narrative_partly"
    text, why = await narrate(report, settings(server))
    assert text == "It was rolled back at stage 2/5 (5%) after 70 s."
    assert why == (
        "1 of its 2 sentences dropped: they held numbers that are not in the evidence"
        " or cannot be checked (x40)"
    )
