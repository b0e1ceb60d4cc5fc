"""A store that lost the controller's data, on a real Redis: told once, its flags served
from their last state until they are back, named by readiness."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from redis import asyncio as aioredis

from controller.adapters.redis import RedisClient, RolloutStore, StoreMarker, connect
from controller.core.drafting import Rebuild
from controller.core.rollouts import RaiseAlert
from controller.daemon.running.store_keeper import StoreKeeper
from controller.daemon.serving import LossGuard, StoreLoss
from controller.daemon.serving.read_worker import flag_states
from controller.ports import SaveOutcome, StateWrite
from controller.settings import RedisSettings
from tests.unit.daemon.serving.test_store_loss import rollout

pytestmark = pytest.mark.integration


@dataclass
class PlannedRebuilds:
    """A rebuilder that plans nothing: how often it was asked to."""

    planned: int = 0
    pending: dict[str, object] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    kept: set[str] = field(default_factory=set)

    async def plan(self) -> dict[str, Rebuild]:
        self.planned += 1
        return {}

    async def step(self) -> list[str]:
        return []


async def _lose(redis_url: str, prefix: str) -> None:
    """What a Redis restarted without its data leaves of the controller's keys: none."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def test_a_lost_store_is_told_once_and_its_flags_served_until_they_are_back(
    redis_url: str, redis_namespace: str
) -> None:
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    alerts: list[RaiseAlert] = []
    rebuilder = PlannedRebuilds()

    async with connect(settings) as client:
        states, loss = RolloutStore(client, settings=settings), StoreLoss()
        marker = StoreMarker(client, settings=settings)
        keeper = StoreKeeper(
            marker=marker, states=states, loss=loss, alarm=alerts.append, rebuilder=rebuilder
        )
        guard = LossGuard(loss, marker)
        # Given a store the keeper claimed (new: nothing to rebuild) with two flags served
        assert await keeper.check() is False
        assert rebuilder.planned == 1  # a new store: the topics are asked what to rebuild
        for flag, stage in (("a", 2), ("b", 0)):
            saved = await states.save(flag, StateWrite(rev=0, rollout=rollout(flag, stage)))
            assert saved is SaveOutcome.SAVED
        assert await keeper.check() is False
        served = await flag_states(states, None, guard)
        assert [(s.flag, s.percent) for s in served.root] == [("a", 25.0), ("b", 1.0)]
        # When Redis loses the controller's data
        await _lose(redis_url, redis_namespace)
        # Then a read before the keeper looked still serves both flags, never none
        served = await flag_states(states, None, guard)
        assert [(s.flag, s.percent) for s in served.root] == [("a", 25.0), ("b", 1.0)]
        # ...the keeper tells it once, naming each flag and its stage, and asks to rebuild
        assert await keeper.check() is True
        assert await keeper.check() is False
        assert [a.kind for a in alerts] == ["store_lost"]
        assert "a: rollout r-a running at stage 3/5 (25%)" in alerts[0].summary
        assert "b: rollout r-b running at stage 1/5 (1%)" in alerts[0].summary
        assert rebuilder.planned == 2
        assert await marker.read() == loss.identity  # claimed again: the next loss is told
        assert loss.degraded() is not None
        assert loss.lost_flags() == ["a", "b"]
        # ...and once a flag is back in the store it is served as the store has it
        back = rollout("a", 2, version=7)
        assert await states.save("a", StateWrite(rev=0, rollout=back)) is SaveOutcome.SAVED
        served = await flag_states(states, None, guard)
        assert [(s.flag, s.version) for s in served.root] == [("a", 7), ("b", 3)]
        assert loss.lost_flags() == ["b"]


async def _two_flags_kept(
    client: RedisClient, settings: RedisSettings, alerts: list[RaiseAlert]
) -> tuple[RolloutStore, StoreLoss, StoreMarker, StoreKeeper]:
    """A store a keeper (rebuilding nothing) claimed, with flags a and b saved and checked."""
    states, loss = RolloutStore(client, settings=settings), StoreLoss()
    marker = StoreMarker(client, settings=settings)
    keeper = StoreKeeper(
        marker=marker, states=states, loss=loss, alarm=alerts.append, rebuilder=None
    )
    assert await keeper.check() is False
    for flag, stage in (("a", 2), ("b", 0)):
        saved = await states.save(flag, StateWrite(rev=0, rollout=rollout(flag, stage)))
        assert saved is SaveOutcome.SAVED
    assert await keeper.check() is False
    return states, loss, marker, keeper


async def test_a_flag_whose_state_alone_is_lost_is_told_and_served(
    redis_url: str, redis_namespace: str
) -> None:
    """What a Redis Cluster master that lost its data does to the flags on its slots, the
    store's identity kept on another master."""
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    alerts: list[RaiseAlert] = []
    async with connect(settings) as client:
        states, loss, marker, keeper = await _two_flags_kept(client, settings, alerts)
        identity = loss.identity
        # When flag b's state alone is gone
        await client.delete(f"{{{redis_namespace}:flag:b}}:state")
        # Then it is told once, by itself, and served from its last state; the identity kept
        assert await keeper.check() is True
        assert await keeper.check() is False
        assert [a.details["identity_lost"] for a in alerts] == [False]
        flags = alerts[0].details["flags"]
        assert isinstance(flags, dict)
        assert list(flags) == ["b"]
        assert (await marker.read(), loss.identity) == (identity, identity)
        served = await flag_states(states, None, LossGuard(loss, marker))
        assert [s.flag for s in served.root] == ["a", "b"]


async def test_flags_the_set_of_flags_lost_with_their_states_kept_are_listed_again(
    redis_url: str, redis_namespace: str
) -> None:
    """What a Redis Cluster master that lost its data does when the set of the flags lived
    on it and their states on the others."""
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    alerts: list[RaiseAlert] = []
    async with connect(settings) as client:
        states, loss, marker, keeper = await _two_flags_kept(client, settings, alerts)
        # When the set of the flags alone is gone
        await client.delete(f"{redis_namespace}:rollouts")
        # Then the keeper lists them again: nothing lost, nothing told, nothing degraded
        assert await keeper.check() is False
        assert await states.flags() == {"a", "b"}
        assert (alerts, loss.lost_flags(), loss.degraded()) == ([], [], None)
        served = await flag_states(states, None, LossGuard(loss, marker))
        assert [s.flag for s in served.root] == ["a", "b"]
