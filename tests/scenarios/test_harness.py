"""The scenario harness itself: a world left at once (a test skipped) leaves nothing open."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.scenarios.harness import Scenario, scenario_topics

pytestmark = [pytest.mark.integration]


async def test_a_scenario_left_while_its_observers_start_stops_their_consumers(
    kafka_bootstrap: str,
    redis_url: str,
    topic_factory: Callable[..., Awaitable[str]],
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    # Given a scenario whose observers are still connecting their consumers
    topics = await scenario_topics(topic_factory)
    world = Scenario(
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        prefix=redis_namespace,
        topics=topics,
        workdir=tmp_path,
    )
    # (the garbage earlier tests of this worker left goes first, unreported: its unclosed
    # clients are theirs, not this test's subject. redis-py 8 leaves a cluster node's
    # connection open where a failover took the node out of the topology while the
    # connection was in use, and its warnings came out here, failing this test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with world:
            await asyncio.sleep(0)  # each observer has begun starting its consumer
            starting = [t for t in world._tasks if not t.done()]
        # When the test leaves at once (as a skip after set-up does), and the garbage goes
        del world
        gc.collect()
    # Then every consumer was stopped: no unclosed consumer is reported
    assert len(starting) == 3
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
