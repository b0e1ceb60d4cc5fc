"""What the MCP server's read tools read: the controller's HTTP API and its two output topics.

Statuses, holds, pipelines and the report's status and history are read over
the HTTP API the way ``rolloutctl status`` and ``report`` read them
(:func:`controller.ctl.looking.diagnosis.get_json`, with ``$ROLLOUTCTL_TOKEN`` as the
bearer). The latest decision and the recent alerts are what the controller
publishes on its decisions and alerts topics, read up to their end as of the
call, as ``rolloutctl report`` reads decisions. Nothing here writes anywhere.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import orjson
from pydantic import BaseModel, ConfigDict, Field

from controller.adapters.kafka import TopicReader
from controller.core.common import ENVIRONMENT_PATTERN, ControllerError, scoped
from controller.core.reading import PipelineRun, RolloutList, RolloutStatus, flag_problem
from controller.core.wire import Alert, Decision, decision_or_alert
from controller.ctl.looking import diagnosis, views
from controller.ctl.report import render as report_render
from controller.ctl.report import report, reporting
from controller.settings import KafkaSettings, TopicSettings

PARTIAL = "the decisions topic was not read to its end: decisions may be missing"
CLIENT_ID = "rolloutctl-mcp"
MAX_ALERTS = 100
"""The most alerts one call returns (the latest)."""
MAX_ALERTS_READ = 200_000
"""The most records of the alerts topic one call reads."""
_V = TypeVar("_V", bound=BaseModel)


class Hold(BaseModel):
    """Why a rollout stands where it is, in words, from what the controller serves."""

    model_config = ConfigDict(frozen=True)

    flag: str
    phase: str
    stage: str | None = Field(description='Where it is, e.g. "stage 2/5 (5%)".')
    flag_version: int
    moving: bool = Field(description="False when something holds it (the reasons say what).")
    reasons: list[str]
    needs: list[str] = Field(
        default_factory=list,
        description="What the running stage still needs before the gate lets it advance, in"
        " words (time left, units per arm, partitions, untested guardrails, an empty ring);"
        " empty when the gate does not hold it.",
    )


class LatestDecision(BaseModel):
    """The newest decision published for a flag, with its evidence, as published."""

    model_config = ConfigDict(frozen=True)

    flag: str
    line: str | None = Field(description="The decision in one line; null when there is none.")
    decision: Decision | None = Field(description="The decision, evidence included.")
    complete: bool = Field(description="False when the topic could not be read to its end.")


class RecentAlerts(BaseModel):
    """The latest alerts published (of one flag, or of all), oldest first."""

    model_config = ConfigDict(frozen=True)

    lines: list[str]
    alerts: list[Alert]
    complete: bool = Field(description="False when the topic could not be read to its end.")


@dataclass(frozen=True, slots=True)
class Reader:
    """Where the controller answers (``base``, its HTTP address) and publishes (``kafka``)."""

    base: str
    kafka: KafkaSettings
    topics: TopicSettings
    timeout_s: float = 10.0

    def rollouts(self) -> RolloutList:
        body = diagnosis.get_json(self.base, "/rollouts", timeout_s=self.timeout_s)
        return _served(RolloutList, body, "/rollouts")

    def status(self, flag: str, environment: str | None = None) -> RolloutStatus | None:
        """``flag``'s rollout (in ``environment``); None when it has none."""
        path = f"/rollouts/{quote(key_of(flag, environment), safe='')}"
        body = diagnosis.get_json(self.base, path, timeout_s=self.timeout_s, missing_ok=True)
        return None if body is None else _served(RolloutStatus, body, path)

    def hold(self, flag: str, environment: str | None = None) -> Hold:
        found = self.status(flag, environment)
        if found is None:
            raise ControllerError(f"no rollout for flag {key_of(flag, environment)!r}")
        return hold_of(found)

    def pipeline(self, flag: str) -> PipelineRun | None:
        """``flag``'s newest pipeline run; None when it has none."""
        checked(flag)
        path = f"/pipelines/{quote(flag, safe='')}"
        body = diagnosis.get_json(self.base, path, timeout_s=self.timeout_s, missing_ok=True)
        return None if body is None else _served(PipelineRun, body, path)

    def report(self, flag: str, environment: str | None = None) -> str:
        """The rollout's report in Markdown, as ``rolloutctl report`` prints it."""
        found = self.status(flag, environment)
        key = key_of(flag, environment)
        if found is None:
            raise ControllerError(f"no rollout for flag {key!r}")
        path = f"/rollouts/{quote(key, safe='')}/history"
        history = diagnosis.get_json(self.base, path, timeout_s=self.timeout_s, missing_ok=True)
        messages, complete = self._decisions(key)
        built = report.build(report.read(found, messages, history), datetime.now(UTC))
        if not complete:
            built.notes.append(
                "the decisions topic was not read to its end: decisions may be missing"
            )
        return report_render.markdown(built)

    def latest_decision(self, flag: str, environment: str | None = None) -> LatestDecision:
        key = key_of(flag, environment)
        messages, complete = self._decisions(key)
        for message in reversed(messages):
            read = decision_or_alert(message)
            if isinstance(read, Decision):
                return LatestDecision(
                    flag=key, line=views.decision_line(read), decision=read, complete=complete
                )
        return LatestDecision(flag=key, line=None, decision=None, complete=complete)

    def alerts(self, flag: str | None, limit: int) -> RecentAlerts:
        key = None if flag is None else checked(flag).encode()
        limit = max(1, min(limit, MAX_ALERTS))
        values, complete = asyncio.run(self._alert_values(key, limit))
        read = (decision_or_alert(orjson.loads(v)) for v in values if _json_object(v))
        alerts = [alert for alert in read if isinstance(alert, Alert)]
        return RecentAlerts(
            lines=[views.decision_line(a) for a in alerts],
            alerts=alerts,
            complete=complete,
        )

    def _decisions(self, key: str) -> tuple[list[object], bool]:
        return asyncio.run(
            reporting.read_decisions(
                self.kafka, self.topics.decisions, key, timeout_s=self.timeout_s
            )
        )

    async def _alert_values(self, key: bytes | None, limit: int) -> tuple[list[bytes], bool]:
        topic = self.topics.alerts
        reader = TopicReader(
            self.kafka,
            [topic],
            from_end=False,
            client_id="rolloutctl-mcp",
            timeout_s=self.timeout_s,
        )
        async with reader:
            return await reader.until_end(
                key=key, max_records=MAX_ALERTS_READ, max_kept=limit, timeout_s=self.timeout_s
            )


def hold_of(status: RolloutStatus) -> Hold:
    """What holds ``status``'s rollout, each reason as the controller words it."""
    reasons = []
    if status.pause_reason:
        reasons.append(f"paused: {status.pause_reason}")
    if status.window_wait:
        reasons.append(status.window_wait)
    if status.next_move is not None:
        reasons.append(status.next_move.why)
    if status.verdict and status.verdict != "advance":
        reasons.append(f"gate: {status.verdict}: {status.verdict_reason or ''}".rstrip(": "))
    if not status.verdict and status.verdict_reason:
        reasons.append(f"ended ({status.phase}): {status.verdict_reason}")
    return Hold(
        flag=status.flag,
        phase=status.phase,
        stage=status.label(),
        flag_version=status.flag_version,
        moving=not reasons,
        reasons=reasons,
        needs=[] if status.needs is None else status.needs.lines,
    )


def key_of(flag: str, environment: str | None) -> str:
    """The flag's key in ``environment`` (none: the controller's default one), checked."""
    checked(flag)
    if environment is not None and not re.fullmatch(ENVIRONMENT_PATTERN, environment):
        raise ControllerError(
            "environment: a lower-case letter, then up to 31 letters, digits, '-' and '_'"
        )
    return scoped(flag, environment, default="")


def checked(flag: str) -> str:
    if (problem := flag_problem(flag)) is not None:
        raise ControllerError(problem)
    return flag


def _served(model: type[_V], body: Any, path: str) -> _V:
    """The answer at ``path`` read into ``model``; an error naming the field that does not fit."""
    return diagnosis.served(model, body, path, model.__name__)


def _json_object(value: bytes) -> bool:
    try:
        return isinstance(orjson.loads(value), dict)
    except orjson.JSONDecodeError:
        return False
