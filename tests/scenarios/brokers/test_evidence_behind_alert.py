"""A partition that never catches up raises one ``evidence_behind`` alert, whatever holds the
stage, in a plan without ``max_duration``.

Of two instances, the one that owns the regression's partition is stopped (``SIGSTOP``)
and stays in the group (a session timeout longer than the wait), so no one counts that
partition while the stage's minimum time ends. The lag bound is shorter than the alert's:
once it passes, the gate's verdict holds on the partition as *lagging* before it could
advance, and the wait must still be timed and alerted. One alert comes within
``engine.evidence_catch_up_alert_seconds`` of the wait, naming the partition, its records
behind (every record produced to it while its owner was stopped) and its owner. Once the
owner resumes and counts it, the flag is rolled back: a later alert of the flag, on the
same partition of the alerts topic, before which no second ``evidence_behind`` came.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios.brokers.lost_broker import FLAG, lost_broker_world, stored_offsets
from tests.scenarios.brokers.test_held_evidence import (
    _ends,
    _frozen_plan,
    _owner_recorded,
    _owners,
    _producer,
    _requests,
    _two_instances,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_LAG_S = 8
"""The lag bound: shorter than the alert's, so the wait turns *lagging* before it; longer
than producing the records, so the broker's log end is pinned after them."""
ALERT_AFTER_S = 20
"""``engine.evidence_catch_up_alert_seconds``."""
SLACK_S = 10
"""Gates a loaded machine may take to see the wait, and then to raise its alert."""


@pytest.mark.timeout(300)
async def test_a_partition_that_never_catches_up_is_alerted_once_naming_its_records_and_owner(
    apache_kafka_bootstrap: str, redis_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    async with lost_broker_world(
        apache_kafka_bootstrap,
        redis_url,
        redis_namespace,
        tmp_path,
        # a stopped member stays in the group: its partitions move to no one meanwhile
        RC_KAFKA__SESSION_TIMEOUT_MS="120000",
        RC_KAFKA__HEARTBEAT_INTERVAL_MS="1000",
        RC_ENGINE__EVIDENCE_MAX_LAG_SECONDS=str(MAX_LAG_S),
        RC_ENGINE__EVIDENCE_CATCH_UP_ALERT_SECONDS=str(ALERT_AFTER_S),
        RC_ENGINE__SWEEP_INTERVAL_SECONDS="1",
    ) as (world, _):
        events = world.topics["events"]
        # Given two instances, each owning events partitions, one gating the flag, and a
        # plan whose first stage has a minimum time and no max_duration
        daemons = _two_instances(world, tmp_path)
        try:
            owned, gating = await _owners(world, daemons)
            other = next(p for p in daemons if p != gating)
            harmed_on, healthy_on = owned[other][0], owned[gating]
            stopped = daemons[other]
            owner = f"{socket.gethostname()}:{stopped.pid}"
            plan = _frozen_plan()
            assert all(stage.max_duration is None for stage in plan.stages)
            await world.start(FLAG, plan)
            state = await world.until(lambda: world.state(FLAG), timeout=60, what="flag state")
            await world.until(
                lambda: _owner_recorded(world, harmed_on, owner), timeout=60, what="owner named"
            )
            rollout = await world.rollout(FLAG)
            assert rollout is not None
            planned_end = rollout.stage_started_at + plan.stages[0].min_duration

            # When the owner of the regression's partition stops for good, and the
            # regression and healthy events are produced
            stored = (await stored_offsets(world))[harmed_on]
            os.killpg(stopped.pid, signal.SIGSTOP)
            stopped_at = datetime.now(planned_end.tzinfo)
            async with _producer(world) as send:
                await send(harmed_on, _requests(state, harmed_on, treatment_errors=0.3))
                for partition in healthy_on:
                    await send(partition, _requests(state, partition, treatment_errors=0.02))
            target = (await _ends(world.bootstrap, events))[harmed_on]

            # Then one evidence_behind alert names the partition, its records and its owner
            alert = await world.until(
                lambda: world.observed.alert_where(flag=FLAG, kind="evidence_behind"),
                timeout=ALERT_AFTER_S + MAX_LAG_S + 60,
                what="an evidence_behind alert",
            )
            details = alert["details"]
            lags = {(b["topic"], b["partition"]): b for b in details["behind"]}
            lag = lags[events, harmed_on]
            assert lag["owner"] == owner, details
            assert lag["stored"] == stored, details
            assert lag["target"] == target, details
            assert lag["records"] == target - (stored or 0) > 0, details
            assert (
                f"partition {harmed_on} of {events} {lag['records']} records behind"
                in (alert["summary"])
            ), alert
            assert f"(owner {owner})" in alert["summary"], alert
            # only the stopped owner's partitions are waited for, each named with its owner
            assert {p for (_, p) in lags} <= set(owned[other]), details
            assert {b["owner"] for b in details["behind"]} == {owner}, details
            # a wait past the stage's planned end, alerted within the alert's seconds
            since = datetime.fromisoformat(details["since"])
            assert since >= planned_end, (since, planned_end)
            assert since <= max(planned_end, stopped_at) + timedelta(seconds=MAX_LAG_S + SLACK_S)
            assert ALERT_AFTER_S <= details["waited_s"] <= ALERT_AFTER_S + SLACK_S, details
            assert not world.observed.decision_where(flag=FLAG, action="advance")

            # And once the owner resumes and counts it, the flag is rolled back: a later
            # alert of the flag, after which the one evidence_behind alert is still one
            os.killpg(stopped.pid, signal.SIGCONT)
            await world.until(
                lambda: world.observed.alert_where(flag=FLAG, kind="rollback"),
                timeout=90,
                what=f"{FLAG} rolled back",
            )
            kinds = [a["kind"] for a in _alerts_of(world.observed.alerts)]
            assert kinds.count("evidence_behind") == 1, kinds
            assert "stuck" not in kinds, kinds  # no max_duration: only this alert said so
        finally:
            for daemon in daemons.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(daemon.pid, signal.SIGCONT)
                daemon.kill()


def _alerts_of(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The flag's alerts up to its rollback's, in the order published."""
    mine = [a for a in alerts if a.get("flag") == FLAG]
    end = next(i for i, a in enumerate(mine) if a["kind"] == "rollback")
    return mine[: end + 1]
