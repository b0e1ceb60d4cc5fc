"""The Unleash sync when Unleash is slow, hostile or changed by hand.

A slow flag never holds back another flag's kill, a kill is never held back
by drift, every strategy on the environment counts, and an answer that is not
Unleash's is unreachable: the engine on in-memory ports, Unleash scripted or
read through the real admin client.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from controller.adapters.unleash.client import UnleashAdmin
from controller.core.rollouts.plan_parts import Backend, UnleashTarget
from controller.core.rollouts.rollout import Phase
from controller.core.serving.serving import Serving, Target
from controller.core.wire.messages import CommandAction
from controller.settings import UnleashSettings
from tests.support.waiting import eventually
from tests.unit.daemon.backends.test_backend_sync import (
    FLAG,
    PLAN,
    TOPICS,
    World,
    command,
    make_world,
    running,
)


@pytest.fixture
def world() -> World:
    return make_world()


@dataclass
class Features:
    """Unleash serving several features; a read of a feature in ``hanging`` never answers."""

    serving: dict[str, Serving] = field(default_factory=dict)
    hanging: set[str] = field(default_factory=set)
    hung: int = 0

    async def read(self, target: Target) -> Serving:
        if target.feature in self.hanging:
            self.hung += 1
            await asyncio.Event().wait()  # an answer dripping in, until cancelled
        return self.serving.get(target.feature, Serving(enabled=False, exists=False))

    async def write(self, target: Target, want: Serving, actual: Serving, *, flag: str) -> None:
        now = self.serving.get(target.feature, Serving(enabled=False))
        self.serving[target.feature] = (
            dataclasses.replace(want, strategy_id="s-1")
            if want.enabled
            else dataclasses.replace(now, enabled=False)
        )

    async def environments(self) -> frozenset[str]:
        return frozenset({"production"})


async def test_a_read_that_never_ends_holds_back_no_other_flag_s_kill() -> None:
    # Given two Unleash-backed rollouts, both served
    world, unleash = make_world(), Features()
    world.sync.flags._backend = unleash
    other = "search"
    other_plan = PLAN.model_copy(update={"backend": Backend(unleash=UnleashTarget(feature="s"))})
    async with running(world.sync):
        await world.command(CommandAction.START, "c1")
        start_other = dataclasses.replace(
            command(CommandAction.START, "c9"), flag=other, plan=other_plan, new_rollout_id="r9"
        )
        await world.engine.rollouts.apply(other, start_other)
        await eventually(lambda: len(unleash.serving) == 2, timeout=5, what="both served")
        # When the other flag's feature stops answering mid-read and its rollout moves on
        unleash.hanging.add("s")
        promote = dataclasses.replace(command(CommandAction.PROMOTE, "c10"), flag=other)
        await world.engine.rollouts.apply(other, promote)
        await eventually(lambda: unleash.hung >= 1, timeout=5, what="the other flag's read hanging")
        # Then a kill of this flag still reaches Unleash
        await world.command(CommandAction.KILL, "c2")
        await eventually(
            lambda: not unleash.serving["new-checkout"].enabled, timeout=5, what="the kill served"
        )
    assert unleash.serving["s"].percent == 5  # the hanging flag kept its last state


async def test_a_kill_is_written_though_a_person_changed_the_percent_before_it(
    world: World,
) -> None:
    await world.command(CommandAction.START, "c1")
    await world.sync.sync(FLAG)
    world.unleash.serving = dataclasses.replace(world.unleash.serving, percent=40)
    await world.command(CommandAction.KILL, "c2")  # before any sweep saw the change
    await world.sync.sync(FLAG)
    assert not world.unleash.serving.enabled
    assert world.alerts("backend_drift") == []


async def test_a_strategy_added_beside_the_controller_s_pauses_the_rollout_naming_it(
    world: World,
) -> None:
    await world.command(CommandAction.START, "c1")
    await world.sync.sync(FLAG)
    added = "a default strategy (s-2) was added beside the controller's, serving everyone"
    world.unleash.serving = dataclasses.replace(world.unleash.serving, others=(added,))
    await world.sync.sync(FLAG)
    assert await world.phase() is Phase.PAUSED
    (alert,) = world.alerts("backend_drift")
    assert added in str(alert["summary"])
    # And resuming while it is still there pauses again: the controller never removes it
    await world.command(CommandAction.RESUME, "c2")
    await world.sync.sync(FLAG)
    assert await world.phase() is Phase.PAUSED
    assert len(world.alerts("backend_drift")) == 2


async def test_unreachable_lasts_until_every_flag_that_got_no_answer_gets_one(
    world: World,
) -> None:
    await world.command(CommandAction.START, "c1")
    await world.sync.alerts.unreachable("search", "Unleash unreachable: deadline")
    assert await world.sync_once([FLAG]) == set()  # an answer for another flag
    assert world.alerts("backend_recovered") == []
    await world.sync.alerts.answered("search")
    assert len(world.alerts("backend_unreachable")) == 1
    assert len(world.alerts("backend_recovered")) == 1


async def test_a_login_page_answered_with_200_alerts_unreachable_never_drift(
    world: World,
) -> None:
    # Given a rollout served, then a login proxy in front of Unleash answering every call
    await world.command(CommandAction.START, "c1")
    await world.sync.sync(FLAG)
    page = httpx.Response(200, text="<html>Sign in</html>", headers={"content-type": "text/html"})
    settings = UnleashSettings(url="http://unleash")
    async with UnleashAdmin(settings, transport=httpx.MockTransport(lambda _r: page)) as admin:
        world.sync.flags._backend = admin
        assert await world.sync_once([FLAG]) == {FLAG}  # tried again, like any outage
    (alert,) = world.alerts("backend_unreachable")
    assert "content type 'text/html'" in str(alert["summary"])
    assert world.alerts("backend_drift") == []
    assert await world.phase() is Phase.RUNNING


async def test_a_state_a_sweep_read_before_a_decision_is_not_synced_after_it(
    world: World,
) -> None:
    await world.command(CommandAction.START, "c1")
    await world.sync.sync(FLAG)
    before = await world.states.load(FLAG)
    world.sync._swept[FLAG] = (world.sync._generation.get(FLAG, 0), before)  # a sweep's read
    await world.command(CommandAction.KILL, "c2")  # decided after it: the flag is nudged
    assert await world.sync._attempt(FLAG)
    assert not world.unleash.serving.enabled


def _document(
    version: int, *, rollout: str = "5", beside: dict[str, Any] | None = None, **ours: Any
) -> dict[str, Any]:
    """A feature document as Unleash answers it, the controller's strategy as it wrote it."""
    parameters = {"rollout": rollout, "stickiness": "default", "groupId": "new-checkout"}
    parameters |= {"rcFlag": FLAG, "rcFlagVersion": str(version)}
    strategy = {"id": "s-1", "name": "flexibleRollout", "constraints": [], **ours}
    strategies = [{**strategy, "parameters": parameters}, *([beside] if beside else [])]
    env = {"name": "production", "enabled": True, "strategies": strategies}
    return {"name": "new-checkout", "environments": [env]}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"beside": {"id": "s-2", "name": "default"}}, "a default strategy (s-2) was added"),
        ({"constraints": [{"contextName": "userId"}]}, "1 constraint(s) were added"),
        ({"disabled": True}, "the flexibleRollout strategy of new-checkout was disabled"),
        ({"rollout": "\u00b2"}, "rollout was set to '\u00b2', not a whole percent"),
    ],
)
async def test_each_change_by_hand_in_unleash_pauses_the_rollout_naming_it(
    world: World, change: dict[str, Any], named: str
) -> None:
    # Given a rollout at 5% that the sync applied, then Unleash read through the real client
    await world.command(CommandAction.START, "c1")
    await world.sync.sync(FLAG)
    rollout = (await world.states.load(FLAG)).rollout
    assert rollout is not None
    body = _document(rollout.flag_version, **change)
    settings = UnleashSettings(url="http://unleash", environment="production")
    transport = httpx.MockTransport(lambda _r: httpx.Response(200, json=body))
    async with UnleashAdmin(settings, transport=transport) as admin:
        world.sync.flags._backend = admin
        assert await world.sync_once([FLAG]) == set()
    # Then the rollout is paused, with an alert naming the change
    assert await world.phase() is Phase.PAUSED
    decision = [orjson.loads(v) for t, _, v in world.outputs.sent if t == TOPICS.decisions][-1]
    assert decision["action"] == "pause:backend_drift"
    (alert,) = world.alerts("backend_drift")
    changes: list[str] = alert["details"]["changes"]  # type: ignore[index]
    assert [c for c in changes if c.startswith(named)], changes
