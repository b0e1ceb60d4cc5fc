"""Guardrails read from a metric source, off the gate loop: a flag whose queries hang holds
alone, a failing source alerts once after its grace and once when it answers again."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

from controller.adapters.memory import MemoryAggregates, MemoryControl, MemoryOutputs, MemoryStates
from controller.core.common import ControllerError
from controller.core.metrics_source import Answer, Series
from controller.core.rollouts import RaiseAlert, parse_plan
from controller.core.rollouts.rollout import CommandInput, Phase
from controller.core.wire.messages import CommandAction
from controller.daemon.rollouts import SourceReadings, build_engine
from controller.settings import EngineSettings, PrometheusSettings, TopicSettings
from tests.support.waiting import eventually
from tests.unit.daemon.rollouts.test_engine import NoDeadLetters

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PART = re.compile(r'"rc_arm", "(\w+)", "", ""\), "rc_role", "(\w+)"')
"""Each part of a guardrail's queries asked as one, by arm and role."""
COUNT = 'sum(increase(req{f="{{flag}}",v="{{arm}}",code="500"}[{{window}}]))'
TOTAL = 'sum(increase(req{f="{{flag}}",v="{{arm}}"}[{{window}}]))'
PLAN = parse_plan(
    {
        "stages": [
            {"percent": 10, "min_duration": 0, "min_units_per_arm": 0},
            {"percent": 100, "min_duration": 0, "min_units_per_arm": 0},
        ],
        "guardrails": [
            {
                "metric": "error_rate",
                "source": "prometheus",
                "prometheus": {"count": COUNT, "total": TOTAL},
            }
        ],
        "min_metric_events": 100,
    }
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Source:
    """A metric source whose answers the test chooses: per flag, a number, an error or a hang."""

    where = "prometheus at http://test (setting prometheus.url)"

    def __init__(self) -> None:
        self.down = False
        self.hang: set[str] = set()
        self.hanging = 0
        self.asked: list[str] = []
        self.unmatched = ""
        """An arm whose count and total match no series."""

    async def query(self, promql: str, *, at: datetime) -> Answer:
        self.asked.append(promql)
        if any(f'f="{flag}"' in promql for flag in self.hang):
            self.hanging += 1
            await asyncio.Event().wait()  # the adapter's deadline would end this; here, never
        if self.down:
            raise ControllerError("ConnectError: connection refused", retriable=True)
        numbers = {"count": 10.0, "total": 1000.0, "fresh": at.timestamp()}  # fresh: just scraped
        return Answer(
            tuple(
                Series((("rc_arm", arm), ("rc_role", role)), numbers[role], at.timestamp())
                for arm, role in PART.findall(promql)
                if not (arm == self.unmatched and role != "fresh")
            )
        )


def start(flag: str) -> CommandInput:
    return CommandInput(
        action=CommandAction.START,
        flag=flag,
        command_id=f"c-{flag}",
        actor="ana",
        now=T0,
        plan=PLAN,
        new_rollout_id=f"r-{flag}",
        new_salt="s",
    )


async def test_a_hanging_query_holds_its_flag_alone_and_a_failing_source_alerts_once() -> None:
    clock, source, alerts = Clock(), Source(), []
    settings = PrometheusSettings(
        url="http://test",
        interval_seconds=0.05,
        max_age_seconds=30,
        alert_after_seconds=60,
        settle_seconds=0,
    )
    sources = SourceReadings(
        source=source,
        settings=settings,
        clock=clock,
        alert=lambda flag, action: alerts.append((flag, action)),
    )
    states = MemoryStates()
    engine = build_engine(
        settings=EngineSettings(),
        topics=TopicSettings(),
        states=states,
        aggregates=MemoryAggregates(),
        outputs=MemoryOutputs(),
        dead_letters=NoDeadLetters(),
        clock=clock,
        sources=sources,
    )
    control = MemoryControl({"slow", "quick"})

    def third_alerts() -> list[RaiseAlert]:
        return [action for flag, action in alerts if flag == "third"]

    async with sources:
        source.hang.add("slow")
        for flag in ("slow", "quick"):
            await engine.rollouts.apply(flag, start(flag))
        clock.now = T0 + timedelta(seconds=5)
        await engine.gates.run_pass(control, full=True)  # starts both flags' readings
        await eventually(lambda: source.hanging == 1, timeout=10, what="slow's queries hanging")

        async def advanced(flag: str) -> bool:
            await engine.gates.run_pass(control, full=True)
            rollout = (await states.load(flag)).rollout
            return rollout is not None and rollout.stage == 1

        # The quick flag advances on its reading while the slow one's queries hang.
        await eventually(lambda: advanced("quick"), timeout=10, what="quick to advance")
        slow = (await states.load("slow")).rollout
        assert slow is not None
        assert slow.stage == 0
        assert slow.phase is Phase.RUNNING
        assert engine.gates.last_pass  # the passes went on

        # The source goes down: a third flag holds, naming it; one alert after the grace.
        source.down = True
        await engine.rollouts.apply("third", start("third"))
        control = MemoryControl({"slow", "quick", "third"})
        await engine.gates.run_pass(control, full=True)

        def failing() -> str:
            reading = sources.readings("third")
            failed = reading.failing.get("error_rate") if reading is not None else None
            return failed.reason if failed is not None else ""

        assert "ConnectError" in await eventually(failing, timeout=10, what="the failed reading")
        assert third_alerts() == []
        clock.now += timedelta(seconds=61)
        await eventually(third_alerts, timeout=10, what="the outage alert")
        alert = third_alerts()[0]
        assert (alert.kind, alert.severity) == ("metric_source_unavailable", "warning")
        assert alert.details["source"] == source.where
        assert "ConnectError" in alert.summary
        third = (await states.load("third")).rollout
        assert third is not None
        assert third.stage == 0
        source.down = False
        await eventually(lambda: len(third_alerts()) == 2, timeout=10, what="the recovery alert")
        assert third_alerts()[1] == RaiseAlert(
            "metric_source_recovered",
            "info",
            f"third: {source.where} answers again; its guardrails read from it gate again",
        )


async def test_an_answer_no_guardrail_can_use_alerts_after_the_grace_and_recovers() -> None:
    # Given a source that answers, but no series for the treatment's label
    clock, source, alerts = Clock(), Source(), []
    source.unmatched = "treatment"
    settings = PrometheusSettings(
        url="http://test", interval_seconds=0.05, alert_after_seconds=60, settle_seconds=0
    )
    sources = SourceReadings(
        source=source, settings=settings, clock=clock, alert=lambda f, a: alerts.append((f, a))
    )
    states = MemoryStates()
    engine = build_engine(
        settings=EngineSettings(),
        topics=TopicSettings(),
        states=states,
        aggregates=MemoryAggregates(),
        outputs=MemoryOutputs(),
        dead_letters=NoDeadLetters(),
        clock=clock,
        sources=sources,
    )
    async with sources:
        await engine.rollouts.apply("nomatch", start("nomatch"))
        clock.now = T0 + timedelta(seconds=5)
        await engine.gates.run_pass(MemoryControl({"nomatch"}), full=True)

        def unusable() -> str:
            reading = sources.readings("nomatch")
            failed = reading.failing.get("error_rate") if reading is not None else None
            return failed.reason if failed is not None else ""

        # Then, while the stage's window may not yet hold two scrapes, it only holds
        def taken() -> bool:
            reading = sources.readings("nomatch")
            return reading is not None and "error_rate" in reading.taken

        await eventually(taken, timeout=10, what="the first reading")
        assert unusable() == ""
        # ...and past max_sample_age_seconds of window it fails, silently within the grace
        clock.now = T0 + timedelta(seconds=65)
        assert "no series" in await eventually(unusable, timeout=10, what="the unusable reading")
        assert alerts == []
        # ...and alerted on once the grace has passed, naming why
        clock.now += timedelta(seconds=61)
        await eventually(lambda: alerts, timeout=10, what="the alert")
        flag, alert = alerts[0]
        assert (flag, alert.kind) == ("nomatch", "metric_source_unavailable")
        assert "treatment: count: no series: nothing matched" in alert.summary
        rollout = (await states.load("nomatch")).rollout
        assert rollout is not None
        assert rollout.stage == 0
        # When the label matches again, it recovers
        source.unmatched = ""
        await eventually(lambda: len(alerts) == 2, timeout=10, what="the recovery alert")
        assert alerts[1][1].kind == "metric_source_recovered"
