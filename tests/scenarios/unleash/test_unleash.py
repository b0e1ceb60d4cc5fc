"""Rollouts served from a real Unleash: the daemon decides, unleash-server serves, a real SDK reads.

Every test runs the real daemon against the real broker and Redis, a real
``unleash-server`` (npm) on PostgreSQL, and the real ``UnleashClient`` SDK
refreshing every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Callable, Generator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.core.rollouts.rollout import Phase
from controller.core.trust.signing import StateVerifier, generate_key, private_key_text
from controller.core.wire.messages import Arm
from controller.dev.unleash import UnleashServer
from controller.sdk import EventEmitter
from controller.settings import KafkaSettings
from tests.conftest import serve_unleash
from tests.scenarios.harness import Scenario
from tests.scenarios.operators.test_webhooks import TOKEN, betteruptime
from tests.scenarios.unleash.unleash_kit import (
    PERCENTS,
    App,
    Person,
    feature_name,
    rolling_at,
    serve_from,
    unleash_plan,
    within_binomial,
)
from tests.support.backing.services import free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def served(
    scenario: Scenario, person: Person, feature: str, *, timeout: float = 30, **want: object
) -> dict[str, Any]:
    """Wait until Unleash's admin API shows ``want`` for ``feature``; what it shows then."""

    async def shown() -> dict[str, Any]:
        last = await person.serving(feature) or {}
        assert all(last.get(k) == v for k, v in want.items()), (
            f"last seen {last}\ndaemon log tail:\n{scenario.daemon.log_text()[-2500:]}"
        )
        return last

    return await eventually(shown, timeout=timeout, what=f"Unleash to serve {want} for {feature}")


async def test_a_healthy_rollout_walks_every_stage_in_unleash_and_the_sdk_serves_its_share(
    scenario: Scenario, unleash_server: UnleashServer, person: Person, app: App
) -> None:
    # Given a daemon serving rollouts from Unleash, and a plan naming a feature
    feature, flag = feature_name(), "checkout.unleash-walk"
    serve_from(scenario, unleash_server)
    scenario.start_daemon()
    await scenario.start(flag, unleash_plan(feature))
    for stage, percent in enumerate(PERCENTS):
        if stage:  # When the operator promotes the rollout stage by stage
            await scenario.send(scenario.command("promote", flag), flag=flag)
        rollout = await scenario.until(
            functools.partial(rolling_at, scenario, flag, stage), timeout=30, what=f"stage {stage}"
        )
        version = rollout["version"]
        # Then the admin API shows the stage's percent, with the flag version, environment on
        now = await served(scenario, person, feature, enabled=True, percent=percent)
        assert now["version"] == version
        assert now["stickiness"] == "default"
        assert now["strategies"] == 1
        # And the real SDK, once refreshed, serves treatment to that share of 10,000 units
        await app.serves_version(feature, version)
        treated = app.treated(feature)
        assert within_binomial(treated, percent), (stage, percent, treated)
    # And completing leaves the feature at 100%, on
    await scenario.send(scenario.command("promote", flag), flag=flag)
    await scenario.until(
        lambda: scenario.observed.decision_where(
            flag=flag, action="promote", phase_after="completed"
        ),
        timeout=30,
        what="completed",
    )
    now = await served(scenario, person, feature, enabled=True, percent=100)
    assert app.treated(feature, 1000) == 1000
    # And every exposure the helper emitted names the flag, the served arm and a served version
    assert app.exposures
    assert {f for f, *_ in app.exposures} == {flag}
    assert {a for _, _, a, _ in app.exposures} == {Arm.TREATMENT, Arm.CONTROL}


async def test_a_faulty_rollout_is_turned_off_in_unleash_and_the_sdk_serves_the_fallback(
    scenario: Scenario, unleash_server: UnleashServer, person: Person, app: App
) -> None:
    # Given an Unleash-backed rollout whose treatment fails half its requests
    feature, flag = feature_name(), "checkout.unleash-faulty"
    serve_from(scenario, unleash_server)
    scenario.start_daemon()
    scenario.run_apps(flag, errors=lambda _s, arm: 0.5 if arm is Arm.TREATMENT else 0.01)
    await scenario.start(flag, unleash_plan(feature, min_duration=timedelta(seconds=2)))
    await served(scenario, person, feature, enabled=True, percent=1)
    # When the gate rolls it back
    rollback = await scenario.until(
        lambda: scenario.observed.decision_where(flag=flag, action="rollback"),
        timeout=90,
        what="the rollback decision",
    )
    # Then the environment is off in Unleash (the strategy is left at the stage's percent)
    now = await served(scenario, person, feature, enabled=False)
    assert now["percent"] == PERCENTS[rollback["stage"]]
    # And the SDK serves the fallback to every unit after its refresh
    await scenario.until(
        lambda: app.enabled.get(feature) is False, timeout=30, what="the SDK's fetch of it"
    )
    assert app.treated(feature) == 0


async def test_a_hand_made_change_in_unleash_pauses_the_rollout_with_an_alert(
    scenario: Scenario, unleash_server: UnleashServer, person: Person
) -> None:
    # Given an Unleash-backed rollout at 1%, on a controller that signs its decisions
    feature, flag = feature_name(), "checkout.unleash-drift"
    serve_from(scenario, unleash_server)
    key, public = generate_key()
    scenario.configure(RC_SIGNING__KEY=private_key_text(key), RC_SIGNING__KEY_ID="ctl-drift")
    scenario.start_daemon()
    await scenario.start(flag, unleash_plan(feature))
    await served(scenario, person, feature, enabled=True, percent=1)
    # When a person sets the percentage to 40 in Unleash
    await person.set_percent(feature, 40)
    # Then within one sweep the rollout pauses, with an alert naming the change
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag=flag, kind="backend_drift"),
        timeout=30,
        what="the drift alert",
    )
    assert "rollout was changed from 1% to 40%" in alert["summary"]
    assert alert["details"]["changes"] == ["rollout was changed from 1% to 40%"]
    decision = await scenario.until(
        lambda: scenario.observed.decision_where(flag=flag, action="pause:backend_drift"),
        timeout=30,
        what="the pause decision",
    )
    assert decision["kind"] == "backend"
    # ...signed, as every decision the controller publishes
    assert StateVerifier({"ctl-drift": public}).decision_problem(decision) is None
    rollout = await scenario.rollout(flag)
    assert rollout is not None
    assert rollout.phase is Phase.PAUSED
    # And the person's change stands: another flag served afterwards proves a sweep ran
    other = feature_name()
    await scenario.start("checkout.unleash-other", unleash_plan(other))
    await served(scenario, person, other, enabled=True, percent=1)
    await scenario.until(
        lambda: scenario.daemon.log_text().count('"backend_applied"') >= 2,
        timeout=30,
        what="a later sync pass",
    )
    assert (await person.serving(feature) or {}).get("percent") == 40
    # When the operator resumes, the controller takes the feature back to the stage's percent
    await scenario.send(scenario.command("resume", flag), flag=flag)
    await served(scenario, person, feature, enabled=True, percent=1)


async def test_a_better_uptime_incident_turns_the_flag_off_in_unleash(
    scenario: Scenario, unleash_server: UnleashServer, person: Person
) -> None:
    # Given an Unleash-backed rollout whose flag is mapped to Better Uptime monitor 4242
    feature, flag = feature_name(), "checkout.unleash-monitored"
    port = free_port()
    serve_from(scenario, unleash_server)
    scenario.map_monitor("4242", [flag])
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__WEBHOOK_TOKEN=TOKEN)
    scenario.start_daemon()
    await scenario.start(flag, unleash_plan(feature))
    await served(scenario, person, feature, enabled=True, percent=1)
    # When Better Uptime reports an incident started on that monitor
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        answer = await http.post(
            "/webhooks/betteruptime",
            json=betteruptime("started"),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert answer.status_code == httpx.codes.ACCEPTED, answer.text
    # Then the flag is killed and its environment is off in Unleash
    await scenario.until(
        lambda: scenario.observed.decision_where(flag=flag, action="kill"),
        timeout=30,
        what="the kill",
    )
    await served(scenario, person, feature, enabled=False)


async def test_unleash_down_across_a_stage_change_gets_it_when_back_with_one_alert(
    scenario: Scenario, pytestconfig: pytest.Config, tmp_path: Path, postgres_url: str
) -> None:
    # Given an Unleash-backed rollout at 1% on an Unleash server of its own
    servers: Generator[UnleashServer] = serve_unleash(
        pytestconfig, tmp_path / "own-unleash", postgres_url
    )
    server = next(servers)
    person = Person(server)
    port = free_port()
    try:
        feature, flag = feature_name(), "checkout.unleash-outage"
        serve_from(scenario, server)
        scenario.configure(RC_HTTP__PORT=str(port))
        scenario.start_daemon()
        await scenario.start(flag, unleash_plan(feature))
        await served(scenario, person, feature, enabled=True, percent=1)
        # And the daemon's /metrics shows the write (counted just after Unleash has it)
        before = await backend_metrics(
            port, until=lambda m: m[("rollout_backend_writes_total", "applied")] >= 1
        )
        assert before[("rollout_backend_apply_latency_seconds_count", "")] >= 1
        assert before[("rollout_backend_unreachable", "")] == 0
        # When Unleash goes down and the rollout is promoted meanwhile
        server.stop()
        await scenario.send(scenario.command("promote", flag), flag=flag)
        await scenario.until(lambda: rolling_at(scenario, flag, 1), timeout=30, what="stage 1")
        await scenario.until(
            lambda: scenario.observed.alert_where(kind="backend_unreachable"),
            timeout=30,
            what="the unreachable alert",
        )
        during = await backend_metrics(port)  # the gauge is set before the alert is sent
        assert during[("rollout_backend_unreachable", "")] == 1
        assert during[("rollout_backend_writes_total", "failed")] >= 1
        await scenario.send(scenario.command("promote", flag), flag=flag)
        await scenario.until(lambda: rolling_at(scenario, flag, 2), timeout=30, what="stage 2")
        await _down_while_retried(scenario, port, passes=10)
        # Then once it is back the latest stage lands, and one outage was alerted
        server.start()
        await served(scenario, person, feature, enabled=True, percent=25)
        await scenario.until(
            lambda: scenario.observed.alert_where(kind="backend_recovered"),
            timeout=30,
            what="the recovery alert",
        )
        kinds = [a["kind"] for a in scenario.observed.alerts]
        assert kinds.count("backend_unreachable") == 1
        assert kinds.count("backend_recovered") == 1
        # And /metrics shows Unleash reachable again and the write that landed
        after = await backend_metrics(port)
        assert after[("rollout_backend_unreachable", "")] == 0
        applied = after[("rollout_backend_writes_total", "applied")]
        assert applied > before[("rollout_backend_writes_total", "applied")]
        assert after[("rollout_backend_apply_latency_seconds_count", "")] == applied
    finally:
        await person.close()
        servers.close()


BackendSamples = dict[tuple[str, str], float]


async def backend_metrics(
    port: int, *, until: Callable[[BackendSamples], bool] = lambda _m: True
) -> BackendSamples:
    """The daemon's ``rollout_backend_*`` samples on its real /metrics, by name and outcome.

    Scraped again (30 s at most) until ``until`` holds of them.
    """
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

        async def scraped() -> BackendSamples:
            answer = await http.get("/metrics")
            answer.raise_for_status()
            found = {
                (s.name, s.labels.get("outcome", "")): s.value
                for family in text_string_to_metric_families(answer.text)
                for s in family.samples
                if s.name.startswith("rollout_backend_")
            }
            assert until(found), found
            return found

        return await eventually(scraped, timeout=30, what="/metrics to show what was awaited")


async def _down_while_retried(scenario: Scenario, port: int, *, passes: int) -> None:
    """Keep Unleash down until the daemon has tried ``passes`` more syncs, each failed:
    each met the outage again, and none may raise a second alert."""
    failed = ("rollout_backend_writes_total", "failed")
    tried = (await backend_metrics(port))[failed]
    await backend_metrics(port, until=lambda m: m[failed] >= tried + passes)
    assert scenario.daemon.running


@pytest.mark.timeout(360)  # its own waits (up to 240 s) run out before pytest's limit
async def test_exposures_from_the_real_sdk_drive_the_gates_and_its_refresh_lag_is_no_srm(
    scenario: Scenario, unleash_server: UnleashServer, tmp_path: Path
) -> None:
    # Given an app that evaluates the flag with the real SDK (refreshing every 2 s, longer
    # than a stage's minimum) and reports what it served through the exposure helper
    feature, flag = feature_name(), "checkout.unleash-gated"
    serve_from(scenario, unleash_server)
    scenario.start_daemon()
    sdk = App(unleash_server, tmp_path / "gated-cache", refresh_interval=2)
    kafka = KafkaSettings(bootstrap_servers=scenario.bootstrap)
    async with EventEmitter(kafka, topic=scenario.topics["events"]) as events:
        sdk.use_emitter(events)
        app = asyncio.create_task(_serve_traffic(sdk, feature, events))
        try:
            # When a rollout with short stages is started (identical arms: the test is of
            # the SDK's lag, so a false rollback, at most alpha, is made a thousandth)
            short = unleash_plan(feature, min_duration=timedelta(seconds=2), alpha=0.001)
            await scenario.start(flag, short)
            # Then the gates walk it to the end on what the SDK actually served
            await scenario.until(
                lambda: scenario.observed.decision_where(flag=flag, phase_after="completed"),
                timeout=240,
                what="the rollout completed on SDK-served exposures",
            )
        finally:
            app.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await app
            sdk.close()
    # And no stage paused for a sample-ratio mismatch while SDKs caught up
    actions = [d["action"] for d in scenario.observed.decisions if d["flag"] == flag]
    assert not [a for a in actions if a.startswith("pause")], actions
    assert actions.count("advance") == len(PERCENTS) - 1, actions
    # And exposures carried the versions the SDK served: several per stage, lagging included
    versions = {v for _, _, _, v in sdk.exposures}
    assert len(versions) >= len(PERCENTS) - 1, versions


async def _serve_traffic(sdk: App, feature: str, events: EventEmitter) -> None:
    """Requests from 4,000 users: each evaluation is an exposure, each request an outcome."""
    rng = random.Random(feature)
    while True:
        for _ in range(100):
            exposed = sdk.flags.exposed(feature, {"userId": f"user-{rng.randrange(4000)}"})
            if exposed is not None:
                events.request(
                    exposed.flag,
                    exposed.unit,
                    exposed.arm,
                    exposed.flag_version,
                    error=rng.random() < 0.02,
                    latency_ms=round(rng.lognormvariate(3, 0.3), 2),
                )
        await asyncio.sleep(0.05)


async def test_a_decision_made_while_unleash_is_down_survives_a_controller_crash(
    scenario: Scenario, unleash_server: UnleashServer, person: Person
) -> None:
    # Given an Unleash-backed rollout at 1%
    feature, flag = feature_name(), "checkout.unleash-crash"
    serve_from(scenario, unleash_server)
    scenario.start_daemon()
    await scenario.start(flag, unleash_plan(feature))
    await served(scenario, person, feature, enabled=True, percent=1)
    try:
        # When Unleash is down, the rollout is promoted, and the controller is killed (-9)
        unleash_server.stop()
        await scenario.send(scenario.command("promote", flag), flag=flag)
        await scenario.until(lambda: rolling_at(scenario, flag, 1), timeout=30, what="stage 1")
        scenario.daemon.wait_for_log('"backend_unreachable"', timeout=30)
        scenario.daemon.kill()
        # Then after both come back, Unleash serves the promoted stage
        unleash_server.start()
        scenario.start_daemon()
        await served(scenario, person, feature, enabled=True, percent=5)
    finally:
        if not unleash_server.running:
            unleash_server.start()
