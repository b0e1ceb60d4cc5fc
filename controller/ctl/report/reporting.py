"""``rolloutctl report``: gather a rollout's status, history and decisions, then render.

The status and the gate history come from the controller's HTTP API
(``/rollouts/{flag}``, ``/rollouts/{flag}/history``); a controller that serves
no history (404) still gets a report, without charts over time. The
decisions come from the decisions topic, read from its beginning up to its
end as of the call, at most :data:`MAX_RECORDS` records and ``--timeout``
seconds; a report built from a partial read says so. With ``--narrative``, the
model gets what is left of ``--deadline`` (:mod:`controller.ctl.report.narrating`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import quote

import orjson
from pydantic import BaseModel

from controller.adapters.kafka import TopicReader
from controller.core.common import ConfigError, ControllerError, split
from controller.core.reading import PipelineRun, RolloutStatus
from controller.core.wire import JsonObject
from controller.ctl.asking import Asking, command_started
from controller.ctl.exits import EXIT_FAILURE
from controller.ctl.looking import diagnosis
from controller.ctl.report import environments, holdout_report, narrating, report
from controller.ctl.report import render as report_render
from controller.ctl.report.model import Report
from controller.ctl.terminal import env_url, os_reason, print_json, warn
from controller.ctl.usage import UsageError
from controller.settings import KafkaSettings, load_settings

MAX_RECORDS = 500_000
"""The most records read from the decisions topic for one report."""
MAX_KEPT = 20_000
"""The most of the flag's decisions kept (the latest): a report shows at most 2,000."""
MAX_BODY_CHARS = 32 * 1024 * 1024
"""The largest status or history answer read: anything bigger is not a controller's."""
CLIENT_ID = "rolloutctl-report"
NOT_STARTED = "no rollout here: the pipeline has not started this environment"
"""A JSON object as read off the wire, before it is read into its model."""
_Built = TypeVar("_Built", Report, environments.ReleaseReport)


def run(args: argparse.Namespace, *, whole_process: bool = False) -> int:
    """Build the report of ``args.flag``'s rollout (or of each environment's) and write it where
    asked; ``--deadline`` counts from the process's start with ``whole_process``
    (:func:`command_started`)."""
    if (args.flag is None) == (args.holdout is None):
        raise UsageError("name a FLAG, or a holdout with --holdout NAME (not both)")
    if args.holdout is not None:
        return holdout_report.run(args)
    if args.since is not None or args.alpha is not None:
        raise UsageError("--since and --alpha are for a holdout's report (--holdout NAME)")
    started = command_started(whole_process=whole_process)
    base = env_url(args.url)
    sections, pipeline = _sections(base, args.flag, args.environment, args.timeout)
    keys = [args.flag] if sections is None else [s.key for s in sections]
    served = {key: _get(base, f"/rollouts/{quote(key, safe='')}", args.timeout) for key in keys}
    if sections is None or len(sections) == 1:
        if (found := served[keys[0]]) is None:
            warn(f"no rollout for flag {keys[0]!r}")
            return EXIT_FAILURE
        served = {keys[0]: found}
    settings = load_settings(args.config)
    kafka = settings.kafka
    if args.bootstrap:
        kafka = kafka.model_copy(update={"bootstrap_servers": args.bootstrap})
    mine = [k for k, found in served.items() if found is not None]
    messages, complete = asyncio.run(
        read_decisions(kafka, settings.topics.decisions, mine, timeout_s=args.timeout)
    )
    asking = None
    if args.narrative:
        asking = Asking(settings.llm, args.deadline, args.allow_small_model, started)
    built = {
        key: _built(
            base, key, found, decisions=(messages, complete), asking=asking, timeout_s=args.timeout
        )
        for key, found in served.items()
        if found is not None
    }
    if sections is None or len(sections) == 1:
        return _write(args, built[keys[0]])
    return _write_release(args, _release(args.flag, sections, pipeline, built))


def _built(
    base: str,
    key: str,
    served: JsonObject,
    *,
    decisions: tuple[list[object], bool],
    asking: Asking | None,
    timeout_s: float,
) -> Report:
    """The report of the rollout ``key`` names, from its status, history and decisions."""
    path = f"/rollouts/{quote(key, safe='')}"
    status = _status(served, base + path)
    history = _get(base, f"{path}/history", timeout_s)
    messages, complete = decisions
    built = report.build(report.read(status, messages, history), datetime.now(UTC))
    if not complete:
        built.notes.append("the decisions topic was not read to its end: decisions may be missing")
    if asking is not None:
        narrating.add_narrative(built, asking)
    return built


def _sections(
    base: str, flag: str, only: str | None, timeout_s: float
) -> tuple[list[environments.Section] | None, PipelineRun | None]:
    """The environments to report on (:func:`environments.sections_of`; None: ``flag``'s own
    rollout alone, as a flag in one environment, or a key naming its environment, has it),
    and the flag's pipeline run (None: it has none)."""
    if split(flag)[1] is not None:
        if only is not None:
            raise UsageError(f"--environment: {flag!r} already names its environment")
        return None, None
    path = f"/pipelines/{quote(flag, safe='')}"
    served = _get(base, path, timeout_s)
    pipeline = (
        None
        if served is None
        else diagnosis.served(PipelineRun, served, base + path, "pipeline run")
    )
    listed = _get(base, "/rollouts", timeout_s) or {}
    rollouts = listed.get("rollouts")
    keys = [
        str(r["flag"])
        for r in (rollouts if isinstance(rollouts, list) else [])
        if isinstance(r, dict) and isinstance(r.get("flag"), str)
    ]
    return environments.sections_of(flag, pipeline, keys, only), pipeline


def _release(
    flag: str,
    sections: list[environments.Section],
    pipeline: PipelineRun | None,
    built: dict[str, Report],
) -> environments.ReleaseReport:
    return environments.ReleaseReport(
        flag=flag,
        generated_at=datetime.now(UTC).isoformat(),
        pipeline=pipeline,
        sections=[
            replace(s, report=built.get(s.key), note="" if s.key in built else NOT_STARTED)
            for s in sections
        ],
    )


def _status(served: JsonObject, url: str) -> RolloutStatus:
    """The served status read into its view model; an error naming what it lacks."""
    return diagnosis.served(RolloutStatus, served, url, "rollout status")


def _write(args: argparse.Namespace, built: Report) -> int:
    where = f"the report of {built.flag}"
    return _written(args, built, report_render.html_page, report_render.markdown, where)


def _write_release(args: argparse.Namespace, built: environments.ReleaseReport) -> int:
    where = f"the report of {built.flag} in {len(built.sections)} environments"
    return _written(args, built, environments.html_page, environments.markdown, where)


def _written(
    args: argparse.Namespace,
    built: _Built,
    html: Callable[[_Built], str],
    markdown: Callable[[_Built], str],
    what: str,
) -> int:
    """``built`` as ``--json``, ``--html FILE`` or Markdown (the default) ask."""
    if args.json:
        print_json(_plain(built))
    elif args.html is not None:
        try:
            args.html.write_text(html(built), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {args.html}: {os_reason(exc)}") from exc
        warn(f"wrote {what} to {args.html}")
    else:
        sys.stdout.write(markdown(built))
    return 0


def _plain(built: Report | environments.ReleaseReport) -> JsonObject:
    """The report's data as JSON-ready values (``asdict`` does not know slotted classes' kids)."""
    raw = orjson.dumps(built, option=orjson.OPT_PASSTHROUGH_DATACLASS, default=_dataclass)
    data: JsonObject = orjson.loads(raw)
    return data


def _dataclass(value: object) -> JsonObject:
    if isinstance(value, BaseModel):  # the pipeline run, as served
        served: JsonObject = value.model_dump(mode="json")
        return served
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is None:
        raise TypeError(type(value).__name__)
    return {name: getattr(value, name) for name in fields}


def _get(base: str, path: str, timeout_s: float) -> JsonObject | None:
    """The JSON object at ``path``; None on 404; an error for anything else. Over the
    controller's read rate (429: a report across environments reads several rollouts), it
    asks again after the ``Retry-After`` it was given, within ``timeout_s``."""
    answer = diagnosis.fetch(base, path, timeout_s=timeout_s)
    if answer.status == 404:
        return None
    if answer.status != 200 or len(answer.text) > MAX_BODY_CHARS:
        raise diagnosis.refused(base, path, answer)
    try:
        body = answer.json()
    except ValueError as exc:
        raise ControllerError(f"{base}{path} answered with something other than JSON") from exc
    if not isinstance(body, dict):
        raise ControllerError(f"{base}{path} answered with JSON that is not an object")
    return body


async def read_decisions(
    kafka: KafkaSettings, topic: str, flag: str | list[str], *, timeout_s: float
) -> tuple[list[object], bool]:
    """``flag``'s messages on ``topic`` up to its current end, and whether the end was reached;
    of each of the keys, when ``flag`` is a list (a flag's rollouts in several environments).

    Decisions are keyed by their flag, so only that flag's records are kept, each
    as its JSON (:func:`controller.ctl.report.report.read` reads them as decisions); a
    record that is no JSON is kept as its bytes, for the report to count as damaged.
    """
    reader = TopicReader(kafka, [topic], from_end=False, client_id=CLIENT_ID, timeout_s=timeout_s)
    async with reader:
        values, complete = await reader.until_end(
            key=flag.encode() if isinstance(flag, str) else [f.encode() for f in flag],
            max_records=MAX_RECORDS,
            max_kept=MAX_KEPT,
            timeout_s=timeout_s,
        )
    messages: list[object] = []
    for value in values:
        try:
            messages.append(orjson.loads(value))
        except orjson.JSONDecodeError:
            messages.append(value)
    return messages, complete
