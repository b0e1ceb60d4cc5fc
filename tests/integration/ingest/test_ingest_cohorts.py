"""Ingest counts a targeted rollout's carried and outside units apart from both arms.

Events carrying ``cohort: carried`` or ``cohort: outside`` go through the real
daemon: none is refused, and the arms the gates read hold exactly the fold of
the compared events (no cohort, or ``compared``), as if the others had never
been sent.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.settings import RedisSettings
from tests.integration.rig import Rig, flags_of
from tests.support.reference import make_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_carried_and_outside_events_reach_no_arm(rig: Rig, tmp_path: Path) -> None:
    rng = random.Random(26)
    events = [make_event(rng, i) for i in range(3000)]
    for event in events:
        cohort = rng.choice([None, None, "compared", "carried", "outside"])
        if cohort is not None:
            event["cohort"] = cohort
    compared = [e for e in events if e.get("cohort") in (None, "compared")]
    with rig.daemon(tmp_path) as daemon:
        await rig.produce_events(events)
        await rig.wait_counted(flags_of(compared), len(compared))
        await rig.settle()
        assert daemon.running, daemon.log_text()[-2000:]
    await rig.assert_exact(compared)
    async with connect(RedisSettings(url=rig.redis_url)) as client:
        store = RedisAggregateStore(
            client, settings=RedisSettings(key_prefix=rig.prefix), topic=rig.events
        )
        assert await store.rejects() == {}
    assert await rig.counted(flags_of(events)) == len(compared)
