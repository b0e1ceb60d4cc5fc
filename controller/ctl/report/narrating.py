"""The model's few sentences atop a canary report (``rolloutctl report --narrative``).

The report's facts go to the configured model as short sentences with the
numbers written as the report writes them; its reply is constrained to
``{"narrative": "..."}``, bounded in size like the advisor's and in time by the
command's deadline (``--deadline``, 30 s from its start); a model known to be
too small to write one is not asked (:mod:`controller.ctl.asking`). A sentence
of it is kept only if :func:`controller.core.reading.narrative.accepted` finds every
number in it among the facts; the report notes how many were dropped, and when
none is left, as when the model is too small or does not answer in time, why
there is no narrative, which stderr says too, in one line.
"""

from __future__ import annotations

import asyncio

import orjson

from controller.core.reading import NARRATIVE_SCHEMA, accepted, messages
from controller.core.rollouts import untrusted
from controller.ctl.asking import Asking, TooSmall, ask
from controller.ctl.report.cells import count, number
from controller.ctl.report.model import Report, StageReport
from controller.ctl.terminal import warn

TASK = "write a report's narrative"


def facts(report: Report) -> list[str]:
    """The report in sentences, each number written once, as the report shows it."""
    served = "-" if report.percent is None else f"{report.percent:g}%"
    lines = [f"The rollout of {untrusted(report.flag, 128)} is {report.phase}; it serves {served}."]
    for stage in report.stages:
        lines += _stage_facts(stage)
    return lines


def _stage_facts(stage: StageReport) -> list[str]:
    seconds = "" if stage.duration_s is None else f", lasted {stage.duration_s:.0f} s"
    lines = [f"{stage.label}{seconds}, ended by {stage.outcome}."]
    for arm in stage.arms:
        lines.append(
            f"{stage.label}, {arm.name}: {count(arm.units)} units, {count(arm.errors)} errors"
            f" in {count(arm.requests)} requests."
        )
    for test in stage.guardrails:
        if test.delta is None:
            lines.append(f"{stage.label}, guardrail {test.metric}: {test.said()}.")
            continue
        lines.append(
            f"{stage.label}, guardrail {test.metric}: {test.said()}, delta {number(test.delta)},"
            f" bound [{number(test.lower)}, {number(test.upper)}], p {number(test.p_value)}."
        )
    return lines


def add_narrative(report: Report, asking: Asking) -> None:
    """Open ``report`` with the model's narrative; without one, a note and a line on stderr."""
    text, why = asyncio.run(narrate(report, asking))
    if text is None:
        report.notes.append(f"no narrative: {why}")
        warn(f"no narrative: {why}")
    elif why:  # some sentences held numbers not in the evidence: they are not shown
        report.notes.append(f"narrative: {why}")
    report.narrative, report.narrated_by = text, asking.llm.model if text else None


async def narrate(report: Report, asking: Asking) -> tuple[str | None, str]:
    """The sentences of the model's narrative whose numbers are all true, or None; and what
    was dropped and why (empty when nothing was)."""
    given = facts(report)
    reply = await ask(asking, TASK, messages(given), NARRATIVE_SCHEMA, name="narrative")
    if isinstance(reply, TooSmall):
        return None, reply.cause
    if not isinstance(reply, str):
        return None, f"the model gave none: {reply.cause}"
    try:
        parsed = orjson.loads(reply.strip())
    except orjson.JSONDecodeError:
        return None, "the model's reply is not JSON"
    text, why = accepted(parsed, given)
    return (untrusted(text, 1200), why) if text is not None else (None, why)
