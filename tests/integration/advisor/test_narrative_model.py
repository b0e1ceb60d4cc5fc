"""``rolloutctl report --narrative`` against a real model server (SmolLM2-135M-Instruct by default).

The bundled model is too small to write a narrative: by default it is not
asked and the report says so at once; asked anyway, the narrative comes
within the deadline or the report goes without one, saying why.
"""

from __future__ import annotations

import time

import pytest

from controller.ctl.asking import Asking
from controller.ctl.report.narrating import add_narrative
from controller.ctl.report.report import from_served
from controller.settings import LlmSettings
from tests.support.backing.services import LLM_MODEL_ALIAS
from tests.unit.ctl.report.test_report import ADVANCE, NOW, ROLLBACK, START, STATUS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DEADLINE = 30.0


@pytest.mark.parametrize("allow_small", [False, True])
def test_the_narrative_comes_within_the_deadline_or_the_report_says_why_not(
    llm_base_url: str, capsys: pytest.CaptureFixture[str], allow_small: bool
) -> None:
    report = from_served(STATUS, [START, ADVANCE, ROLLBACK], None, NOW)
    notes = list(report.notes)
    llm = LlmSettings(base_url=llm_base_url, model=LLM_MODEL_ALIAS)
    began = time.monotonic()
    add_narrative(report, Asking(llm, DEADLINE, allow_small))
    took = time.monotonic() - began
    err = capsys.readouterr().err
    added = report.notes[len(notes) :]
    if not allow_small:
        assert report.narrative is None
        assert added == [
            f"no narrative: the model {LLM_MODEL_ALIAS} is too small to write a report's"
            " narrative (its name says 0.135 B parameters, below 1 B), so it was not asked;"
            " --allow-small-model asks it anyway"
        ]
        assert err == f"rolloutctl: {added[0]}\n"
        return
    if report.narrative is None:
        (note,) = added
        assert note.startswith("no narrative: ")
        assert "HTTP" not in note  # the server took the request and its format
        assert err == f"rolloutctl: {note}\n"
    else:
        assert report.narrated_by == LLM_MODEL_ALIAS
        assert err == ""
    print(f"narrative in {took:.1f} s: {report.narrative or added}")
