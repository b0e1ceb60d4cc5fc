"""``plan draft`` and ``report --narrative`` answer within their deadline, and skip a model too
small for the task at once: a fake model server that hangs, drips or lists its size."""

from __future__ import annotations

import argparse
import asyncio
import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from controller.ctl.app import main
from controller.ctl.arguments import DEFAULT_DEADLINE, seconds
from controller.ctl.asking import Asking, command_started, process_started
from controller.ctl.report.narrating import add_narrative
from controller.ctl.report.report import from_served
from controller.settings import LlmSettings
from tests.support.fake_model import FIXED, FakeModel, _reply, completion
from tests.unit.core.drafting.test_drafting import SANE
from tests.unit.ctl.report.test_report import ADVANCE, NOW, ROLLBACK, START, STATUS

SMOLLM2 = {"id": "smollm2-135m-instruct", "meta": {"n_params": 134515008, "n_vocab": 49152}}
"""The bundled model as llama.cpp's server lists it."""
LATE = "no answer within the 3 s deadline (--deadline SECONDS to change it)"
TEMPLATE = "rolloutctl: using the built-in medium-risk template: "


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeModel]:
    monkeypatch.setitem(FIXED, "plan", _reply(200, completion(orjson.dumps(SANE).decode())))
    async with FakeModel() as fake:
        yield fake


# (model name, what the server does, what it lists, options, the line on stderr or None
#  for the model's plan, whether the model was asked for a plan)
CASES: list[tuple[str, str, list[dict[str, Any]], list[str], str | None, bool]] = [
    ("fake", "hang", [], ["--deadline", "3"], f"the model gave no plan: {LATE}", True),
    ("fake", "drip", [], ["--deadline", "3"], f"the model gave no plan: {LATE}", True),
    ("fake", "hang", [], ["--timeout", "3"], f"the model gave no plan: {LATE}", True),
    (
        "smollm2-135m-instruct",
        "plan",
        [],
        [],
        "the model smollm2-135m-instruct is too small to draft a plan (its name says 0.135 B"
        " parameters, below 1 B), so it was not asked; --allow-small-model asks it anyway",
        False,
    ),
    ("qwen2.5:0.5b", "hang", [], [], "(its name says 0.5 B parameters, below 1 B)", False),
    ("fake", "hang", [SMOLLM2], [], "(its server lists 0.135 B parameters, below 1 B)", False),
    ("smollm2-135m-instruct", "plan", [], ["--allow-small-model"], None, True),
    ("fake", "plan", [SMOLLM2], ["--allow-small-model"], None, True),
    ("smollm2-135m-instruct", "hang", [], ["--allow-small-model", "--deadline", "3"], LATE, True),
    ("llama3.1-8b-instruct", "plan", [SMOLLM2], [], None, True),  # the name says enough
    ("fake", "plan", [{"id": "other", "meta": {"n_params": 7_000_000_000}}], [], None, True),
]


@pytest.mark.parametrize(("model", "behaviour", "listed", "options", "says", "asked"), CASES)
async def test_plan_draft_answers_in_time_and_skips_a_model_too_small_at_once(
    server: FakeModel,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    model: str,
    behaviour: str,
    listed: list[dict[str, Any]],
    options: list[str],
    says: str | None,
    asked: bool,
) -> None:
    server.behaviour, server.listed = behaviour, listed
    argv = ["plan", "draft", "--risk", "medium", "--describe", "new checkout flow"]
    argv += ["--model-url", server.base_url, "--model", model, *options]
    assert await asyncio.to_thread(main, argv) == 0
    out, err = capsys.readouterr()
    drafted = tmp_path / "draft.yaml"
    drafted.write_text(out, encoding="utf-8")
    assert main(["plan", "validate", str(drafted)]) == 0  # whichever it is, it validates
    capsys.readouterr()
    assert len(server.requests) == (1 if asked else 0)
    if says is None:
        assert err == ""
        assert f"# Drafted by the model {model} for a medium-risk change" in out
        return
    assert err.startswith(TEMPLATE)
    assert says in err
    assert err.count("\n") == 1  # one line
    assert "# Built-in template for a medium-risk change: new checkout flow" in out


async def test_the_deadline_counts_from_the_commands_start(server: FakeModel) -> None:
    server.behaviour = "plan"
    llm = LlmSettings(base_url=server.base_url, model="fake")
    spent = Asking(llm, 5.0, started=time.monotonic() - 5.0)  # start-up took it all
    report = from_served(STATUS, [START, ADVANCE, ROLLBACK], None, NOW)
    await asyncio.to_thread(add_narrative, report, spent)
    assert report.narrative is None
    assert report.notes[-1] == (
        "no narrative: the model gave none: not asked: no time left of the 5 s deadline"
        " (--deadline SECONDS to change it)"
    )
    assert server.requests == []


@pytest.mark.parametrize(
    ("model", "behaviour", "listed", "allow_small", "note"),
    [
        ("fake", "hang", [], False, f"no narrative: the model gave none: {LATE}"),
        ("fake", "drip", [], False, f"no narrative: the model gave none: {LATE}"),
        (
            "smollm2-135m-instruct",
            "narrative",
            [],
            False,
            "no narrative: the model smollm2-135m-instruct is too small to write a report's"
            " narrative (its name says 0.135 B parameters, below 1 B), so it was not asked;"
            " --allow-small-model asks it anyway",
        ),
        ("fake", "narrative", [SMOLLM2], False, "(its server lists 0.135 B parameters"),
        ("smollm2-135m-instruct", "narrative", [], True, None),
        ("fake", "narrative", [], False, None),
    ],
)
async def test_report_narrative_answers_in_time_and_skips_a_model_too_small_at_once(
    server: FakeModel,
    capsys: pytest.CaptureFixture[str],
    model: str,
    behaviour: str,
    listed: list[dict[str, Any]],
    allow_small: bool,
    note: str | None,
) -> None:
    server.behaviour, server.listed = behaviour, listed
    report = from_served(STATUS, [START, ADVANCE, ROLLBACK], None, NOW)
    notes = list(report.notes)
    asking = Asking(LlmSettings(base_url=server.base_url, model=model), 3.0, allow_small)
    await asyncio.to_thread(add_narrative, report, asking)
    err = capsys.readouterr().err
    if note is None:
        assert report.narrative == "It was rolled back at stage 2/5 (5%) after 70 s."
        assert report.narrated_by == model
        assert (report.notes, err) == (notes, "")
        return
    assert report.narrative is None
    assert report.narrated_by is None
    (added,) = report.notes[len(notes) :]
    assert note in added
    assert err == f"rolloutctl: {added}\n"  # the same, in one line on stderr
    too_small = "too small" in note or "server lists" in note
    assert len(server.requests) == (0 if too_small else 1)


@pytest.mark.parametrize(
    ("given", "value"),
    [("30", 30.0), ("0.5", 0.5), ("0", None), ("-1", None), ("nan", None), ("inf", None)],
)
def test_a_deadline_is_a_positive_number_of_seconds(given: str, value: float | None) -> None:
    if value is None:
        with pytest.raises(argparse.ArgumentTypeError):
            seconds(given)
    else:
        assert seconds(given) == value


def test_a_command_run_from_a_shell_is_timed_from_its_process_start() -> None:
    # A fresh process: its start lies before its own first reading of the clock (a
    # long-lived one, such as a test worker, is older than a command and reads "now").
    probe = "from controller.ctl.asking import process_started as p; import time; "
    probe += "print(time.monotonic() - p())"
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert float(ran.stdout) > 0
    now = time.monotonic()
    assert process_started() <= time.monotonic()
    assert command_started(whole_process=False) >= now
    assert math.isclose(Asking(LlmSettings()).left(), DEFAULT_DEADLINE, abs_tol=1.0)
