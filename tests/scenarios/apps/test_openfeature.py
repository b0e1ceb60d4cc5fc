"""OpenFeature end to end: two app processes with the provider, the daemon, its aggregates.

Both processes resolve every unit to the arm the controller's flag state
implies, at every stage; the provider's hook exposes each unit once per flag
version per process, ``track`` converts the exposed units, and the daemon
counts each of those events exactly once in the aggregates its gates read;
measured steps arrive as request outcomes with their errors and latencies.

A plan's typed arm values reach apps signed on the topic and through OFREP,
where OpenFeature's own provider resolves them and refuses another type.

A Node app does the same over HTTP: OpenFeature's server SDK and OFREP
provider evaluate against the daemon, ``clients/js``'s hook exposes each unit
once, and its requests and conversions reach the same aggregates exactly.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.stats.aggregates import Conversions, FlagAggregates
from controller.core.wire.arm_values import ArmValues
from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm, FlagState
from controller.sdk.flags import FlagBook
from controller.settings import RedisSettings
from tests.scenarios.harness import Scenario, manual_plan
from tests.support.backing.reading import read_to_end
from tests.support.backing.services import free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "checkout.new-flow"
UNITS = [f"user-{i}" for i in range(2000)]
PERCENTS = (1, 5, 25)
TRACKED = UNITS[:300]
VALUE = 4.5


class App:
    """One app process (``tests/support/clients/openfeature_app.py``) and its command pipe."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    async def start(cls, scenario: Scenario) -> App:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.clients.openfeature_app",
            scenario.bootstrap,
            scenario.topics["flag_state"],
            scenario.topics["events"],
            FLAG,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        app = cls(process)
        assert await app._answer() == {"ready": True}
        return app

    async def ask(self, **command: Any) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(orjson.dumps(command) + b"\n")
        await self._process.stdin.drain()
        return await self._answer()

    async def _answer(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), 60)
        assert line, f"the app process ended (exit code {self._process.returncode})"
        answer: dict[str, Any] = orjson.loads(line)
        return answer

    async def close(self) -> dict[str, Any]:
        answer = await self.ask(cmd="close")
        await asyncio.wait_for(self._process.wait(), 30)
        return answer

    def kill(self) -> None:
        if self._process.returncode is None:
            self._process.kill()


async def test_two_openfeature_apps_agree_and_their_events_reach_the_gate_once(
    scenario: Scenario,
) -> None:
    scenario.start_daemon()
    await scenario.start(FLAG, manual_plan())
    apps = [await App.start(scenario), await App.start(scenario)]
    try:
        versions = await _through_stages(scenario, apps)
        assert (await apps[0].ask(cmd="track", units=TRACKED, value=VALUE))["tracked"] == 300
        measured = await apps[1].ask(cmd="measure", units=TRACKED)
        assert measured == {"measured": 300, "failed": 60}
        await _killed_serves_control(scenario, apps)
        closed = [await app.close() for app in apps]
    finally:
        for app in apps:
            app.kill()

    # Then each process exposed every unit once per version, and app 0 converted 300
    last_version, last_salt = versions[-1]
    expected_events = 2 * len(UNITS) * len(versions) + 2 * len(TRACKED)
    assert sum(c["sent"] for c in closed) == expected_events
    assert all(c["dropped"] == 0 for c in closed)
    events = await _events(scenario)
    assert len(events) == len({e["id"] for e in events}) == expected_events

    # And the daemon counted each exactly once, per version and arm
    for (version, salt), percent in zip(versions, PERCENTS, strict=True):
        treated = sum(assign(FLAG, salt, u, percent) is Arm.TREATMENT for u in UNITS)
        want = (2 * treated, 2 * (len(UNITS) - treated))
        aggregates = await _counted(
            scenario, version, lambda a, w=want: _exposures(a) >= w, f"exposures v{version}"
        )
        assert _exposures(aggregates) == want
    converted = sum(assign(FLAG, last_salt, u, PERCENTS[-1]) is Arm.TREATMENT for u in TRACKED)
    aggregates = await _counted(
        scenario,
        last_version,
        lambda a: a.treatment.conversions + a.control.conversions >= len(TRACKED),
        "conversions",
    )
    assert (aggregates.treatment.conversions, aggregates.control.conversions) == (
        converted,
        len(TRACKED) - converted,
    )
    assert aggregates.treatment.conversion_value_sum == pytest.approx(converted * VALUE)

    # And the measured steps' outcomes, errors and latencies, by arm
    arms = [assign(FLAG, last_salt, u, PERCENTS[-1]) for u in TRACKED]
    want_requests = (arms.count(Arm.TREATMENT), arms.count(Arm.CONTROL))
    want_errors = (
        sum(a is Arm.TREATMENT for a in arms[::5]),
        sum(a is Arm.CONTROL for a in arms[::5]),
    )
    aggregates = await _counted(
        scenario,
        last_version,
        lambda a: a.treatment.requests + a.control.requests >= len(TRACKED),
        "request outcomes",
    )
    assert (aggregates.treatment.requests, aggregates.control.requests) == want_requests
    assert (aggregates.treatment.errors, aggregates.control.errors) == want_errors
    assert (aggregates.treatment.latency_count, aggregates.control.latency_count) == want_requests


async def _through_stages(scenario: Scenario, apps: list[App]) -> list[tuple[int, str]]:
    """At each stage both apps resolve every unit as the daemon's state implies."""
    versions: list[tuple[int, str]] = []
    for stage, percent in enumerate(PERCENTS):
        state = await scenario.until(
            lambda s=stage: _at_stage(scenario, s),  # type: ignore[misc]
            timeout=30,
            what=f"stage {stage}",
        )
        version, salt = state["version"], state["salt"]
        expected = [assign(FLAG, salt, u, percent).value for u in UNITS]
        for app in apps:
            answer = await app.ask(cmd="eval", version=version, units=UNITS)
            assert answer.get("variants") == expected, answer.get("error")
            assert answer["reasons"] == ["SPLIT"]
        versions.append((version, salt))
        if stage < len(PERCENTS) - 1:
            await scenario.send(scenario.command("promote", FLAG), flag=FLAG)
    return versions


async def _killed_serves_control(scenario: Scenario, apps: list[App]) -> None:
    """After a kill every unit resolves to control, DISABLED, and nothing more is exposed."""
    await scenario.send(scenario.command("kill", FLAG, reason="test"), flag=FLAG)
    killed = await scenario.until(
        lambda: next(
            (
                s
                for s in scenario.observed.flag_states
                if s["flag"] == FLAG and s["status"] == "killed"
            ),
            None,
        ),
        timeout=30,
        what="the killed flag state",
    )
    for app in apps:
        answer = await app.ask(cmd="eval", version=killed["version"], units=UNITS)
        assert answer.get("variants") == ["control"] * len(UNITS), answer.get("error")
        assert answer["reasons"] == ["DISABLED"]


def _at_stage(scenario: Scenario, stage: int) -> dict[str, Any] | None:
    states = [s for s in scenario.observed.flag_states if s["flag"] == FLAG]
    if not states or states[-1]["stage"] != stage or states[-1]["status"] != "rolling_out":
        return None
    return states[-1]


def _exposures(aggregates: FlagAggregates) -> tuple[int, int]:
    return aggregates.treatment.exposures, aggregates.control.exposures


async def _counted(
    scenario: Scenario,
    version: int,
    done: Any,
    what: str,
    timeout: float = 60,
    *,
    flag: str = FLAG,
) -> FlagAggregates:
    """The aggregates of one flag version, once ``done(aggregates)``: what the gate reads."""
    async with connect(RedisSettings(url=scenario.redis_url)) as client:
        store = RedisAggregateStore(
            client,
            settings=RedisSettings(key_prefix=scenario.prefix),
            topic=scenario.topics["events"],
        )

        async def counted() -> FlagAggregates:
            aggregates = await store.read(flag, [version])
            assert done(aggregates), aggregates
            return aggregates

        return await eventually(counted, timeout=timeout, what=what)


async def _events(scenario: Scenario) -> list[dict[str, Any]]:
    """Every event on the events topic, read up to its end offsets."""
    records = await read_to_end(scenario.bootstrap, scenario.topics["events"])
    return [orjson.loads(r.value) for r in records]


NODE_FLAG = "checkout.node-flow"
NODE_UNITS = 500


def by_hand_at(percent: float) -> Plan:
    """A first stage at ``percent`` that only a command would end within a test."""
    return Plan(
        name="by-hand",
        stages=[
            Stage(percent=percent, min_duration=timedelta(minutes=10), min_units_per_arm=0),
            Stage(percent=100, min_units_per_arm=0),
        ],
        guardrails=[Guardrail(metric="error_rate")],
    )


async def test_a_node_app_with_the_hook_is_counted_exactly(
    scenario: Scenario, node: str, js_client: Path
) -> None:
    # Given the daemon serving OFREP and the intake, and a flag at 30%
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
    scenario.start_daemon()
    await scenario.start(NODE_FLAG, by_hand_at(30))
    state = await scenario.until(
        lambda: next((s for s in scenario.observed.flag_states if s["flag"] == NODE_FLAG), None),
        timeout=30,
        what="the flag rolling out",
    )

    # When a Node app (OpenFeature's server SDK, its OFREP provider and clients/js's hook)
    # evaluates every unit twice, measures a request per unit and converts every fifth
    done = await asyncio.to_thread(
        subprocess.run,
        [node, "examples/node/app.mjs", f"http://127.0.0.1:{port}", NODE_FLAG, str(NODE_UNITS)],
        cwd=js_client,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    app = orjson.loads(done.stdout.splitlines()[-1])

    # Then it served the arms the flag state implies, and every event was accepted once
    units = [f"unit-{i}" for i in range(NODE_UNITS)]
    arms = [assign(NODE_FLAG, state["salt"], u, 30) for u in units]
    assert [app["arms"][u] for u in units] == [a.value for a in arms]
    assert app["versions"] == [state["version"]]
    converted = arms[::5]
    sent = 2 * NODE_UNITS + len(converted)
    assert app["counters"] == {
        "sent": sent,
        "dropped": 0,
        "rejected": 0,
        "retries": 0,
        "invalid": 0,
        "untracked": 0,
        "unnamed": 0,
        "pending": 0,
    }

    # And the daemon counted one exposure per unit, each request and conversion, by arm
    treated = arms.count(Arm.TREATMENT)
    aggregates = await _counted(
        scenario,
        state["version"],
        lambda a: (
            sum(_exposures(a)) >= NODE_UNITS
            and a.treatment.requests + a.control.requests >= NODE_UNITS
            and a.treatment.conversions + a.control.conversions >= len(converted)
        ),
        "the Node app's events",
        flag=NODE_FLAG,
    )
    assert _exposures(aggregates) == (treated, NODE_UNITS - treated)
    assert (aggregates.treatment.requests, aggregates.control.requests) == (
        treated,
        NODE_UNITS - treated,
    )
    failed = (converted.count(Arm.TREATMENT), converted.count(Arm.CONTROL))
    assert (aggregates.treatment.errors, aggregates.control.errors) == failed
    assert (aggregates.treatment.conversions, aggregates.control.conversions) == failed
    assert aggregates.treatment.conversion_value_sum == pytest.approx(failed[0] * 4.5)
    # client.track("checkout_completed") through the wrapped provider: named conversions
    named = [
        arm.named.get("checkout_completed", Conversions())
        for arm in (aggregates.treatment, aggregates.control)
    ]
    assert [(n.count, n.values) for n in named] == [(failed[0], failed[0]), (failed[1], failed[1])]
    assert (aggregates.treatment.latency_count, aggregates.control.latency_count) == (
        treated,
        NODE_UNITS - treated,
    )


TYPED_FLAG = "search.ranker"
RANKERS = {"type": "string", "control": "v1-ranker", "treatment": "v2-ranker"}


async def test_typed_values_reach_apps_on_the_topic_and_through_ofrep(scenario: Scenario) -> None:
    # Given the daemon serving OFREP, and a plan whose arms serve two rankers, at 30%
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
    scenario.start_daemon()
    plan = by_hand_at(30).model_copy(update={"values": ArmValues.model_validate(RANKERS)})
    await scenario.start(TYPED_FLAG, plan)
    state = await scenario.until(
        lambda: next((s for s in scenario.observed.flag_states if s["flag"] == TYPED_FLAG), None),
        timeout=30,
        what="the typed flag rolling out",
    )

    # Then the signed flag state on the topic carries the values, and the SDK serves them
    assert state["values"] == RANKERS
    book = FlagBook([FlagState.model_validate(state)])
    units = [f"unit-{i}" for i in range(300)]
    want = [RANKERS[assign(TYPED_FLAG, state["salt"], u, 30).value] for u in units]
    assert [book.value(TYPED_FLAG, u, "none") for u in units] == want

    # And OpenFeature's own OFREP provider resolves the same strings, and refuses a boolean
    base = f"http://127.0.0.1:{port}"

    def resolve() -> tuple[list[str], Any]:
        api.set_provider(OFREPProvider(base), "typed")
        client = api.get_client("typed")
        strings = [client.get_string_value(TYPED_FLAG, "none", EvaluationContext(u)) for u in units]
        boolean = client.get_boolean_details(TYPED_FLAG, True, EvaluationContext(units[0]))
        return strings, boolean

    async def resolved() -> tuple[list[str], Any]:
        got = await asyncio.to_thread(resolve)
        assert got[0][0] != "none", "OFREP has not loaded the flag yet"
        return got

    try:
        strings, boolean = await eventually(resolved, timeout=30, what="OFREP serving the flag")
    finally:
        api.clear_providers()
    assert strings == want
    assert (boolean.value, boolean.error_code) == (True, ErrorCode.TYPE_MISMATCH)

    # And an operator sees them: `rolloutctl status FLAG` over the read API
    shown = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).with_name("rolloutctl")), "status", TYPED_FLAG, "--url", base],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert 'values:      treatment "v2-ranker", control "v1-ranker" (string)' in shown.stdout
