"""Redis killed and started empty while a rollout is at its third stage, on Apache Kafka.

The daemon runs on a Redis of its own with no persistence. The rollout is
promoted to its third stage (25%) and evidence of its split is counted; Redis
is killed and started again, empty. With no command typed, the flag is
rebuilt at its last decision within 30 s: served at 25% again, the same
rollout at its third stage, its evidence only of the rebuilt split (events
sent under the lost split's versions, counted again by ingest from the log,
are not its). Throughout, an app asks OFREP, ``GET /flags`` and ``/readyz``:
the flag is never unknown (404) nor served at another percent, readiness names
the degraded store and the flag during the gap, and one ``store_lost`` alert
names the loss, the flag and its stage.
"""

from __future__ import annotations

import pytest

from tests.scenarios.harness import manual_plan
from tests.scenarios.store_loss.kit import (
    FLAG,
    App,
    World,
    at_third_stage,
    counted,
    exposures,
    rebuilt_at_third_stage,
    served_at,
    served_throughout,
    status,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_redis_that_comes_back_empty_is_rebuilt_without_an_operator(
    world: World,
) -> None:
    scenario, url = world.scenario, world.url
    # Given a rollout at its third stage (25%), with evidence of its split counted
    before = await at_third_stage(scenario, manual_plan())
    await exposures(scenario, before.flag_version, per_arm=40, run="old")
    await scenario.until(
        lambda: counted(url, (40, 40)), timeout=30, what="the old split's evidence counted"
    )
    app = App(url)
    await served_at(scenario, app, before)
    # When Redis is killed and started again without its data
    world.redis.kill()
    world.redis.start()
    # Then, with no command typed, the flag is served at its stage's percent again within
    # 30 s, rebuilt under a version above every one the lost rollout published
    rebuilt = await rebuilt_at_third_stage(scenario, app, before)
    # ...status shows the rollout at stage 3 with evidence only of its own split: the old
    # split's events, counted again from the log, are not its; its own are
    await exposures(scenario, rebuilt.flag_version, per_arm=5, run="new")
    evidence = await scenario.until(
        lambda: counted(url, (5, 5)), timeout=30, what="the rebuilt split's evidence counted"
    )
    assert min(evidence["flag_versions"]) > before.flag_version
    shown = await scenario.until(lambda: status(url), timeout=30, what="the rollout's status")
    assert (shown["stage"], shown["percent"]) == (2, 25.0), shown
    # ...one alert named the loss, the flag and its stage
    alert = scenario.observed.alert_where(kind="store_lost")
    assert alert is not None, scenario.observed.alerts
    assert alert["details"]["flags"][FLAG]["stage"] == "stage 3/4 (25%)", alert
    assert f"{FLAG}: rollout {before.rollout_id} running at stage 3/4 (25%)" in alert["summary"]
    assert alert["details"]["rebuilding"] is True
    # ...and the app, asking all along, was never told the flag is unknown nor served
    # another percent; readiness named the degraded store and the flag during the gap
    await served_throughout(scenario, app, 25.0)
    assert [a["kind"] for a in scenario.observed.alerts].count("store_lost") == 1
    degraded = app.degraded()
    assert any(FLAG in d["flags"] or FLAG in d["rebuilding"] for d in degraded), app.ready[-3:]
    assert "degraded" not in app.ready[-1], app.ready[-1]
