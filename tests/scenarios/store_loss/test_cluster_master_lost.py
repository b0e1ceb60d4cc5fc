"""One master of a Redis Cluster killed and started again empty, while a rollout is at its
third stage, on Apache Kafka.

The daemon's store is a 3-master Redis Cluster of its own, no replicas, nothing kept on
disk; its key prefix puts the store's identity, its set of the flags with a rollout and the
flag's own keys each on another master. One master is killed and started again: it rejoins
the cluster with its slots and none of their keys. With no command typed:

- the master that held the flag's keys: the flag is rebuilt at its stage within 30 s,
  served at 25% again under versions above every one the lost split published, and the
  same rollout shown at its third stage; ``/readyz`` named the degraded store and the flag
  during the gap, and one ``store_lost`` alert named the flag and its stage, the store's
  identity kept;
- the master that held the set of the flags: the flag, whose state is intact, is served
  at 25% all along and shown at its third stage, and the daemon is not left degraded.

Throughout, an app asks OFREP, ``GET /flags`` and ``/readyz``: the flag is never unknown
(404) nor served at another percent.
"""

from __future__ import annotations

import pytest

from controller.adapters.redis.aggregates import connect
from controller.settings import RedisSettings
from tests.scenarios.harness import Scenario, manual_plan
from tests.scenarios.store_loss.kit import (
    FLAG,
    App,
    ClusterWorld,
    at_third_stage,
    keys_of,
    rebuilt_at_third_stage,
    served_at,
    served_throughout,
    status,
)
from tests.support.backing.redis_failover import CLUSTER_NODE_LEFT

pytestmark = [pytest.mark.integration, pytest.mark.slow, *CLUSTER_NODE_LEFT]


async def _lose_master_of(world: ClusterWorld, what: str) -> None:
    """The master holding ``what`` (:func:`keys_of`) killed and started again empty."""
    master = world.master_of(keys_of(world.prefix)[what])
    master.kill()
    master.start()


async def _shown_at_third_stage(world: Scenario, url: str) -> None:
    shown = await world.until(lambda: status(url), timeout=30, what="the rollout's status")
    assert (shown["phase"], shown["stage"], shown["percent"]) == ("running", 2, 25.0), shown


async def test_a_master_that_comes_back_empty_has_its_flag_rebuilt(
    cluster_world: ClusterWorld,
) -> None:
    scenario, url = cluster_world.scenario, cluster_world.url
    # Given a rollout at its third stage (25%), served
    before = await at_third_stage(scenario, manual_plan())
    app = App(url)
    await served_at(scenario, app, before)
    # When the master holding the flag's keys is killed and started again without its data
    await _lose_master_of(cluster_world, "flag state")
    # Then, with no command typed, the flag is served at its stage's percent again within
    # 30 s, rebuilt under a version above every one the lost rollout published
    await rebuilt_at_third_stage(scenario, app, before)
    await _shown_at_third_stage(scenario, url)
    # ...one alert named the loss, the flag and its stage, the store's identity kept
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(kind="store_lost"), timeout=30, what="the alert"
    )
    assert alert["details"]["flags"][FLAG]["stage"] == "stage 3/4 (25%)", alert
    assert f"{FLAG}: rollout {before.rollout_id} running at stage 3/4 (25%)" in alert["summary"]
    assert (alert["details"]["rebuilding"], alert["details"]["identity_lost"]) == (True, False)
    # ...readiness named the degraded store and the flag during the gap, and no more after
    await scenario.until(
        lambda: app.ready and "degraded" not in app.ready[-1], timeout=30, what="ready again"
    )
    degraded = app.degraded()
    came_back = app.ready[-1].get("store_recovered") or {}
    # named while it was served from memory, or (a gap shorter than the app's round) after
    assert any(FLAG in d["flags"] or FLAG in d["rebuilding"] for d in degraded) or (
        FLAG in came_back.get("flags", [])
    ), app.ready[-1]
    assert FLAG in came_back.get("flags", []), app.ready[-1]
    # ...and the app, asking all along, was never told the flag is unknown nor served
    # another percent
    await served_throughout(scenario, app, 25.0)
    assert [a["kind"] for a in scenario.observed.alerts].count("store_lost") == 1
    assert "degraded" not in app.ready[-1], app.ready[-1]


async def test_a_master_that_comes_back_empty_with_the_set_of_flags_leaves_the_flag_served(
    cluster_world: ClusterWorld,
) -> None:
    scenario, url = cluster_world.scenario, cluster_world.url
    # Given a rollout at its third stage (25%), served
    before = await at_third_stage(scenario, manual_plan())
    app = App(url)
    await served_at(scenario, app, before)
    # When the master holding the set of the flags is killed and started again empty
    await _lose_master_of(cluster_world, "flag index")
    # Then, with no command typed, the set lists the flag again within 30 s (what the
    # gates' sweeps and a restarted daemon read), and readiness is not left degraded
    await scenario.until(
        lambda: _listed(cluster_world), timeout=30, what="the flag in the set of flags again"
    )
    await scenario.until(
        lambda: app.ready and "degraded" not in app.ready[-1], timeout=30, what="ready again"
    )
    # ...the same rollout, never lost, at its third stage, served at 25% all along
    rollout = await scenario.rollout(FLAG)
    assert rollout is not None
    assert (rollout.rollout_id, rollout.flag_version) == (before.rollout_id, before.flag_version)
    await _shown_at_third_stage(scenario, url)
    await served_throughout(scenario, app, 25.0)
    assert [a["kind"] for a in scenario.observed.alerts].count("store_lost") <= 1


async def _listed(world: ClusterWorld) -> bool:
    async with connect(RedisSettings(url=world.cluster.url)) as client:
        return bool(await client.sismember(keys_of(world.prefix)["flag index"], FLAG))
