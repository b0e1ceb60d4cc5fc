"""The Unleash sync writes a plan's prerequisites as the feature's dependencies."""

from __future__ import annotations

import dataclasses

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Backend, UnleashTarget
from controller.core.serving.dependencies import Dependency
from controller.core.wire import Prerequisite
from controller.core.wire.messages import CommandAction
from tests.unit.daemon.backends.test_backend_sync import FLAG, PLAN, World, command, world

__all__ = ["world"]


def requiring(*needs: tuple[str, list[str]]) -> Plan:
    requires = [Prerequisite.model_validate({"flag": f, "variants": v}) for f, v in needs]
    return PLAN.model_copy(update={"requires": requires})


async def start(world: World, flag: str, plan: Plan) -> None:
    started = dataclasses.replace(
        command(CommandAction.START, f"start-{flag}"), flag=flag, plan=plan
    )
    await world.engine.rollouts.apply(flag, started)


def on_unleash(feature: str, **where: str) -> Plan:
    return PLAN.model_copy(
        update={"backend": Backend(unleash=UnleashTarget(feature=feature, **where))}
    )


async def test_the_prerequisites_are_written_as_dependencies_on_the_parents_features(
    world: World,
) -> None:
    await start(world, "pay", on_unleash("f-pay"))
    await start(world, "cart", on_unleash("f-cart"))
    await start(world, "any", on_unleash("f-any"))
    needs = [("pay", ["treatment"]), ("cart", ["control"]), ("any", ["treatment", "control"])]
    await start(world, FLAG, requiring(*needs))
    assert await world.sync_once([FLAG]) == set()
    (written,) = world.unleash.writes
    assert written.dependencies == (
        Dependency("f-cart", enabled=False),
        Dependency("f-pay", enabled=True),
    )
    await world.sync.sync(FLAG)
    assert len(world.unleash.writes) == 1  # in place: not written again


async def test_a_parent_not_served_from_the_same_unleash_fails_the_sync_with_nothing_written(
    world: World,
) -> None:
    await start(world, "pay", on_unleash("f-pay", project="other"))
    await start(world, FLAG, requiring(("pay", ["treatment"])))
    for _ in range(2):
        assert await world.sync_once([FLAG]) == set()  # alerted once, tried each sweep
    assert world.unleash.writes == []
    (alert,) = world.alerts("input_failed")
    assert "requires pay, which is not served by Unleash project default" in str(alert["summary"])
