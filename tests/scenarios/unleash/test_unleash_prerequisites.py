"""Prerequisites served by a real Unleash as dependent features, evaluated by the real SDK.

The daemon writes each child's prerequisites as the feature's dependencies;
``unleash-server`` serves them to the real ``UnleashClient`` SDK, which
evaluates them itself: a child is served to a unit only where its parent is
(``[treatment]``), or is not (``[control]``).
"""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.dev.unleash import UnleashServer
from tests.scenarios.harness import Scenario, manual_plan
from tests.scenarios.unleash.unleash_kit import App, Person, feature_name, serve_from, unleash_plan
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UNITS = 4000


def child_plan(feature: str, parent: str, variants: list[str]) -> Plan:
    """Everyone at once, served from ``feature``, requiring ``parent`` to serve ``variants``."""
    base = unleash_plan(feature).model_dump(mode="json")
    stages = [Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0)]
    requires = [{"flag": parent, "variants": variants}]
    return Plan.model_validate(base | {"stages": stages, "requires": requires})


def served_units(app: App, feature: str) -> set[int]:
    """The units of ``UNITS`` the SDK serves ``feature`` to."""
    client = app.client
    return {i for i in range(UNITS) if client.is_enabled(feature, {"userId": f"user-{i}"})}


async def test_unleash_serves_a_child_only_where_its_parent_serves_what_it_requires(
    scenario: Scenario, unleash_server: UnleashServer, person: Person, app: App
) -> None:
    # Given a parent rolling out from Unleash at its first stage (1%)
    serve_from(scenario, unleash_server)
    scenario.start_daemon()
    parent, on_f, off_f = feature_name(), feature_name(), feature_name()
    await scenario.start("checkout.parent", unleash_plan(parent))
    await eventually(
        lambda: _serving(person, parent, percent=1), timeout=60, what="the parent at 1%"
    )
    # When two children start at 100%, one requiring its treatment, one its control
    await scenario.start("checkout.on", child_plan(on_f, "checkout.parent", ["treatment"]))
    await scenario.start("checkout.off", child_plan(off_f, "checkout.parent", ["control"]))
    for feature in (on_f, off_f):
        await eventually(
            functools.partial(_serving, person, feature, percent=100),
            timeout=60,
            what=f"{feature} on",
        )
    # Then each feature's dependencies are the plan's, on the parent's feature
    assert await person.dependencies(on_f) == [{"feature": parent, "enabled": True, "variants": []}]
    assert await person.dependencies(off_f) == [
        {"feature": parent, "enabled": False, "variants": []}
    ]
    # And the real SDK serves the first child exactly to the units its parent serves, the
    # second exactly to the others, though both children's strategies serve everyone
    for feature in (parent, on_f, off_f):
        version = (await person.serving(feature) or {})["version"]
        await app.serves_version(feature, version, timeout=60)
    treated = served_units(app, parent)
    assert 0 < len(treated) < UNITS // 10
    assert served_units(app, on_f) == treated
    assert served_units(app, off_f) == set(range(UNITS)) - treated
    # When the parent is killed (its environment off in Unleash)
    await scenario.send(scenario.command("kill", "checkout.parent"), flag="checkout.parent")
    await eventually(
        lambda: app.enabled.get(parent) is False, timeout=60, what="the SDK sees the parent off"
    )
    # Then the first child is served to nobody, the second to everyone
    everyone = set(range(UNITS))
    await eventually(
        lambda: served_units(app, on_f) == set() and served_units(app, off_f) == everyone,
        timeout=30,
        what="the children served as the parent off says",
    )


async def _serving(person: Person, feature: str, *, percent: int) -> bool:
    now = await person.serving(feature)
    return bool(now and now.get("enabled") and now.get("percent") == percent)


async def test_a_start_unleash_cannot_serve_is_refused_with_the_reason(
    scenario: Scenario, unleash_server: UnleashServer, person: Person
) -> None:
    # Given a flag the controller serves (not Unleash), and one Unleash serves requiring it
    serve_from(scenario, unleash_server)
    scenario.start_daemon()
    plain, feature = "checkout.plain", feature_name()
    await scenario.start(plain, manual_plan())
    await eventually(
        lambda: scenario.observed.decision_where(flag=plain, action="start"),
        timeout=30,
        what="the plain start decided",
    )
    # When a rollout served by Unleash is started requiring it
    command = scenario.command(
        "start", "checkout.child", plan=child_plan(feature, plain, ["treatment"])
    )
    decision = await scenario.decided(command, flag="checkout.child", what="the child's start")
    # Then the start is refused, naming what Unleash cannot express, and nothing is written
    assert decision["outcome"] == "rejected"
    assert "which Unleash does not serve: a dependency can only name an Unleash feature" in str(
        decision["reason"]
    )
    assert await person.serving(feature) is None


async def test_a_dependency_removed_by_hand_pauses_the_child_and_is_written_back_on_resume(
    scenario: Scenario, unleash_server: UnleashServer, person: Person
) -> None:
    # Given a child rolling out from Unleash at 1%, requiring a parent's treatment
    serve_from(scenario, unleash_server)
    scenario.start_daemon()
    parent, feature, flag = feature_name(), feature_name(), "checkout.child-drift"
    await scenario.start("checkout.parent-drift", unleash_plan(parent))
    await eventually(
        functools.partial(_serving, person, parent, percent=1), timeout=60, what="parent on"
    )
    needs = [{"flag": "checkout.parent-drift", "variants": ["treatment"]}]
    plan = Plan.model_validate(unleash_plan(feature).model_dump(mode="json") | {"requires": needs})
    await scenario.start(flag, plan)
    await eventually(
        functools.partial(_serving, person, feature, percent=1), timeout=60, what="child on"
    )
    written = [{"feature": parent, "enabled": True, "variants": []}]
    assert await person.dependencies(feature) == written
    # When a person deletes the child's dependency in Unleash
    await person.remove_dependencies(feature)
    # Then the rollout pauses with an alert naming the change
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag=flag, kind="backend_drift"),
        timeout=30,
        what="the drift alert",
    )
    change = f"dependencies of {feature} were changed from [{parent} enabled] to []"
    assert alert["details"]["changes"] == [change]
    await scenario.until(
        lambda: scenario.observed.decision_where(flag=flag, action="pause:backend_drift"),
        timeout=30,
        what="the pause decision",
    )
    # And when the operator resumes, the controller writes the dependency back
    await scenario.send(scenario.command("resume", flag), flag=flag)
    await eventually(
        lambda: _has(person, feature, written), timeout=30, what="the dependency written back"
    )


async def _has(person: Person, feature: str, dependencies: list[dict[str, object]]) -> bool:
    return await person.dependencies(feature) == dependencies


async def test_unleash_keeps_dependencies_one_level_deep_as_the_start_check_assumes(
    unleash_server: UnleashServer, person: Person
) -> None:
    # Given three features, the middle one depending on the first
    grand, parent, child = feature_name(), feature_name(), feature_name()
    for feature in (grand, parent, child):
        await person.create_feature(feature)
    assert (await person.add_dependency(parent, grand, enabled=True)).is_success
    # Then Unleash refuses (403, InvalidOperationError) a dependency on a parent that has a
    # parent of its own, and one that would make the child of another feature a parent
    below = await person.add_dependency(child, parent, enabled=False)
    assert below.status_code == 403
    assert "Transitive dependency detected" in below.text
    above = await person.add_dependency(grand, child, enabled=True)
    assert above.status_code == 403
    assert "Transitive dependency detected" in above.text
    # And a dependency on a feature it does not have
    missing = await person.add_dependency(child, feature_name(), enabled=True)
    assert missing.status_code == 403
    assert "No active feature" in missing.text
