"""Pipelines across Unleash environments: the real daemon, broker and Redis, a real
``unleash-server`` with its two open-source environments, ``development`` and ``production``,
and the real ``UnleashClient`` in each environment (its own client token).

A pipeline ``development`` → ``production`` serves each step from that Unleash environment:
the SDK of each environment serves the arms of its own step's stage after its refresh, and
development's completion starts production. A person's change in one environment pauses
only that environment's rollout, in a pipeline or with two rollouts of one feature running at
once; the other is left as it was.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.core.rollouts.plan import Plan
from controller.dev.unleash import UnleashServer
from tests.scenarios.harness import Scenario
from tests.scenarios.pipelines.test_pipelines import PIPELINE, Release, key_in
from tests.scenarios.unleash.test_unleash import backend_metrics, served
from tests.scenarios.unleash.unleash_kit import (
    App,
    Person,
    feature_name,
    serve_from,
    within_binomial,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENVIRONMENTS = '{"names": ["development", "production"], "default": "production"}'
"""The controller serves Unleash's two environments; production keeps the flag's own key."""
STEPS = ("development", "production")
PERCENTS = (25, 100)


def plan(feature: str) -> dict[str, Any]:
    """25% until promoted, then 100%; served by Unleash in the step's own environment."""
    return {
        "stages": [
            {"percent": 25, "min_duration": "1h", "min_units_per_arm": 0},
            {"percent": 100, "min_duration": "0s", "min_units_per_arm": 0},
        ],
        "guardrails": [{"metric": "error_rate"}],
        "alpha": 0.01,
        "backend": {"unleash": {"feature": feature}},
    }


def pipeline(feature: str) -> dict[str, Any]:
    return {
        "name": "unleash-release",
        "plans": {"served": plan(feature)},
        "plan": "served",
        "steps": [{"environment": e} for e in STEPS],
    }


@pytest.fixture
def apps(unleash_server: UnleashServer, tmp_path: Path) -> Iterator[dict[str, App]]:
    """An app with the real UnleashClient in each environment, each with that environment's
    client token."""
    found = {e: App(unleash_server, tmp_path / f"sdk-{e}", environment=e) for e in STEPS}
    yield found
    for app in found.values():
        app.close()


class UnleashRelease(Release):
    """A daemon serving development and production from Unleash, and the operator."""

    def __init__(self, scenario: Scenario, server: UnleashServer) -> None:
        serve_from(scenario, server)
        super().__init__(scenario, ENVIRONMENTS)

    async def start(
        self, flag: str, pipeline: dict[str, Any] = PIPELINE, *, timeout: float = 60
    ) -> dict[str, Any]:
        return await super().start(flag, pipeline, timeout=timeout)

    async def promote(self, flag: str, environment: str) -> None:
        command = self.scenario.command("promote", flag, environment=environment)
        await self.scenario.decided(
            command, flag=flag, what=f"the promote in {environment}", timeout=60
        )

    def state(self, flag: str, environment: str) -> dict[str, Any] | None:
        """The latest flag state of the flag's rollout in ``environment``."""
        return self.scenario.state(key_in(flag, environment))

    async def at(self, flag: str, environment: str, stage: int) -> dict[str, Any]:
        """Wait until the environment's rollout serves ``stage``; its state."""

        def rolling() -> dict[str, Any] | None:  # a last stage may complete by itself
            found = self.state(flag, environment)
            ok = found and found["stage"] == stage and found["status"] != "paused"
            return found if ok else None

        state: dict[str, Any] = await self.scenario.until(
            rolling, timeout=60, what=f"{environment} rolling out at stage {stage}"
        )
        return state

    async def complete(self, flag: str, environment: str) -> dict[str, Any]:
        """Promote the environment's rollout past its last stage; its completed state."""
        await self.promote(flag, environment)

        def completed() -> dict[str, Any] | None:
            found = self.state(flag, environment)
            return found if found and found["status"] == "completed" else None

        state: dict[str, Any] = await self.scenario.until(
            completed, timeout=60, what=f"{environment} completed"
        )
        return state


async def sdk_serves(app: App, feature: str, version: int, percent: int) -> None:
    """The environment's SDK, once refreshed to ``version``, serves ``percent`` of 10,000."""
    await app.serves_version(feature, version, timeout=60)
    treated = app.treated(feature)
    assert within_binomial(treated, percent), (percent, treated)


async def test_development_then_production_each_served_by_its_unleash_environment(
    scenario: Scenario, unleash_server: UnleashServer, person: Person, apps: dict[str, App]
) -> None:
    # Given a controller serving development and production from Unleash's two environments
    feature, flag = feature_name(), "checkout.unleash-pipeline"
    release = UnleashRelease(scenario, unleash_server)
    scenario.start_daemon()

    # When the operator starts the pipeline development → production
    first = await release.start(flag, pipeline(feature))
    assert (first["action"], first["outcome"]) == ("pipeline_start", "applied")
    assert first["evidence"]["environment"] == "development"

    # Then development's SDK serves each of development's stages; production's serves nobody
    for stage, percent in enumerate(PERCENTS):
        if stage:
            await release.promote(flag, "development")
        state = await release.at(flag, "development", stage)
        await served(scenario, person, feature, enabled=True, percent=percent)
        await sdk_serves(apps["development"], feature, state["version"], percent)
        assert apps["production"].treated(feature, 1000) == 0
        assert (await person.serving(feature, "production") or {}).get("enabled") is not True
    assert release.state(flag, "production") is None

    # When development completes, production starts: its own stages in its own environment
    developed = await release.complete(flag, "development")
    await scenario.until(
        lambda: ("pipeline_start", "production") in release.decided(flag),
        timeout=60,
        what="development's completion starting production",
    )
    for stage, percent in enumerate(PERCENTS):
        if stage:
            await release.promote(flag, "production")
        state = await release.at(flag, "production", stage)
        await scenario.until(
            functools.partial(
                person_sees, person, feature, "production", enabled=True, percent=percent
            ),
            timeout=60,
            what=f"production's {percent}% in Unleash",
        )
        await sdk_serves(apps["production"], feature, state["version"], percent)
        # ...while development's SDK goes on serving development's completed 100%
        assert apps["development"].treated(feature, 1000) == 1000
    await release.complete(flag, "production")
    await scenario.until(
        lambda: ("pipeline_complete", "production") in release.decided(flag),
        timeout=60,
        what="the pipeline completing",
    )
    assert release.decided(flag) == [
        ("pipeline_start", "development"),
        ("pipeline_step", "development"),
        ("pipeline_start", "production"),
        ("pipeline_complete", "production"),
    ]
    # And each environment's strategy names its own rollout and version
    development = await person.serving(feature, "development") or {}
    production = await person.serving(feature, "production") or {}
    assert development["parameters"]["rcFlag"] == f"{flag}@development"
    assert development["version"] == developed["version"]
    assert production["parameters"]["rcFlag"] == flag
    assert (development["percent"], production["percent"]) == (100, 100)
    # And every exposure each SDK's helper emitted names its environment's rollout
    assert {f for f, *_ in apps["development"].exposures} == {f"{flag}@development"}
    assert {f for f, *_ in apps["production"].exposures} == {flag}
    view = await release.status(flag)
    assert view["phase"] == "completed"
    assert [e["status"] for e in view["environments"]] == ["completed", "completed"]


async def test_a_change_by_hand_in_production_pauses_only_production(
    scenario: Scenario, unleash_server: UnleashServer, person: Person, apps: dict[str, App]
) -> None:
    # Given the pipeline, development completed and production rolling out at 25%
    feature, flag = feature_name(), "checkout.unleash-pipeline-drift"
    release = UnleashRelease(scenario, unleash_server)
    scenario.start_daemon()
    await release.start(flag, pipeline(feature))
    await release.at(flag, "development", 0)
    await release.promote(flag, "development")
    await release.at(flag, "development", 1)
    developed = await release.complete(flag, "development")
    await release.at(flag, "production", 0)
    await served(scenario, person, feature, enabled=True, percent=100)  # development's
    await scenario.until(
        lambda: person_sees(person, feature, "production", percent=25),
        timeout=60,
        what="production's 25% in Unleash",
    )
    await sdk_serves(apps["development"], feature, developed["version"], 100)
    before = await person.serving(feature, "development")

    # When a person sets production's percentage to 40 in Unleash
    await person.set_percent(feature, 40, "production")

    # Then production's rollout pauses with an alert naming production's change
    pause = await scenario.until(
        lambda: scenario.observed.decision_where(flag=flag, action="pause:backend_drift"),
        timeout=60,
        what="production's pause",
    )
    assert pause["kind"] == "backend"
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag=flag, kind="backend_drift"),
        timeout=30,
        what="production's drift alert",
    )
    assert alert["details"]["environment"] == "production"
    assert alert["details"]["changes"] == ["rollout was changed from 25% to 40%"]
    # ...and the sync goes on comparing every flag (each sweep counts production as held)
    held = ("rollout_backend_writes_total", "held")
    seen = (await backend_metrics(release.port)).get(held, 0)
    await backend_metrics(release.port, until=lambda m: m.get(held, 0) >= seen + 2)
    # And development is untouched: its rollout, its Unleash environment, its SDK
    development_key = key_in(flag, "development")
    assert (
        scenario.observed.decision_where(flag=development_key, action="pause:backend_drift") is None
    )
    assert scenario.observed.alert_where(flag=development_key, kind="backend_drift") is None
    now = release.state(flag, "development") or {}
    assert (now["status"], now["version"]) == ("completed", developed["version"])
    assert await person.serving(feature, "development") == before
    assert apps["development"].treated(feature, 1000) == 1000
    # And the pipeline still runs production's step, its rollout paused, not stopped
    view = await release.status(flag)
    assert view["phase"] == "running"
    steps = {e["environment"]: e for e in view["environments"]}
    assert steps["development"]["status"] == "completed"
    assert (steps["production"]["status"], steps["production"]["rollout"]["phase"]) == (
        "running",
        "paused",
    )
    assert ("pipeline_stop", "production") not in release.decided(flag)


async def person_sees(person: Person, feature: str, environment: str, **want: object) -> bool:
    now = await person.serving(feature, environment) or {}
    return all(now.get(k) == v for k, v in want.items())


async def test_one_feature_s_rollouts_in_two_environments_sync_and_drift_apart(
    scenario: Scenario, unleash_server: UnleashServer, person: Person
) -> None:
    # Given two rollouts of one feature running at once, in development and in production
    feature, flag = feature_name(), "checkout.unleash-two-environments"
    release = UnleashRelease(scenario, unleash_server)
    scenario.start_daemon()
    for environment in STEPS:
        served_there = plan(feature)
        served_there["backend"]["unleash"]["environment"] = environment
        start = scenario.command(
            "start", flag, plan=Plan.model_validate(served_there), environment=environment
        )
        await scenario.send(start, flag=flag)
        await release.at(flag, environment, 0)
    for environment in STEPS:
        await scenario.until(
            functools.partial(person_sees, person, feature, environment, enabled=True, percent=25),
            timeout=60,
            what=f"{environment}'s 25% in Unleash",
        )

    # When a person sets development's percentage to 40 in Unleash
    await person.set_percent(feature, 40, "development")

    # Then development's rollout pauses, naming development's change
    development = key_in(flag, "development")
    await scenario.until(
        lambda: scenario.observed.decision_where(flag=development, action="pause:backend_drift"),
        timeout=60,
        what="development's pause",
    )
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag=development, kind="backend_drift"),
        timeout=30,
        what="development's drift alert",
    )
    assert alert["details"]["environment"] == "development"
    # And production goes on: promoted, Unleash serves its 100% there
    await release.promote(flag, "production")
    await release.at(flag, "production", 1)
    await scenario.until(
        functools.partial(person_sees, person, feature, "production", enabled=True, percent=100),
        timeout=60,
        what="production's 100% in Unleash",
    )
    # ...while development keeps the person's 40%, paused, and production saw no drift
    held = ("rollout_backend_writes_total", "held")
    seen = (await backend_metrics(release.port)).get(held, 0)
    await backend_metrics(release.port, until=lambda m: m.get(held, 0) >= seen + 2)
    assert await person_sees(person, feature, "development", enabled=True, percent=40)
    assert (release.state(flag, "development") or {}).get("status") == "paused"
    assert scenario.observed.alert_where(flag=flag, kind="backend_drift") is None
    assert scenario.observed.decision_where(flag=flag, action="pause:backend_drift") is None


async def test_a_step_in_an_environment_unleash_lacks_is_refused_and_a_mix_is_not(
    scenario: Scenario, unleash_server: UnleashServer
) -> None:
    # Given a controller serving staging too, which open-source Unleash does not have
    feature, flag = feature_name(), "checkout.unleash-staging"
    release = UnleashRelease(scenario, unleash_server)
    scenario.configure(
        RC_ENGINE__ENVIRONMENTS='{"names": ["staging", "production"], "default": "production"}'
    )
    scenario.start_daemon()

    # When the operator starts a pipeline serving staging from Unleash
    on_unleash = {
        **pipeline(feature),
        "steps": [{"environment": "staging"}, {"environment": "production"}],
    }
    refused = await release.start(flag, on_unleash)

    # Then it is refused, naming the step's field and the environment Unleash lacks
    assert (refused["kind"], refused["outcome"]) == ("pipeline", "rejected")
    assert refused["reason"] == (
        "invalid pipeline: steps.0.environment: Unleash has no environment 'staging'"
        " (it has development, production)"
    )
    assert scenario.state(key_in(flag, "staging")) is None

    # And staging served by the controller's own flag states, production by Unleash, starts
    own = {key: value for key, value in plan(feature).items() if key != "backend"}
    mixed = {
        "name": "mixed",
        "plans": {"own": own, "served": plan(feature)},
        "steps": [
            {"environment": "staging", "plan": "own"},
            {"environment": "production", "plan": "served"},
        ],
    }
    started = await release.start(flag, mixed)
    assert (started["action"], started["outcome"]) == ("pipeline_start", "applied")
    assert started["evidence"]["environment"] == "staging"
    await release.at(flag, "staging", 0)
