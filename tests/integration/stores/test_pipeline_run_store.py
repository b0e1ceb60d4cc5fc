"""Pipeline runs in Redis, one node and a Cluster: a run is saved with its outbox by
compare-and-set, read back whole, listed by flag, and taken off the running ones once over."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.adapters.redis.client import RedisClient
from controller.adapters.redis.pipeline_runs import PipelineRunStore
from controller.core.release import Pipeline, RunPhase, begin
from controller.ports import OutboxMessage
from controller.settings import RedisSettings

pytestmark = [pytest.mark.integration]

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PIPELINE = Pipeline.model_validate(
    {
        "name": "checkout-release",
        "plans": {"standard": {"stages": [{"percent": 5}, {"percent": 100}]}},
        "plan": "standard",
        "overrides": {"dev": {"stages": [{"percent": 100, "min_units_per_arm": 0}]}},
        "steps": [
            {"environment": "dev"},
            {"environment": "production", "soak": "1h", "approval": {"needs": [{"role": "a"}]}},
        ],
    }
)


@pytest.fixture
def client(store_client: RedisClient) -> RedisClient:
    """The single Redis node, then the Redis Cluster (``store_client``)."""
    return store_client


async def test_a_run_is_saved_with_its_outbox_once_per_revision(
    client: RedisClient, redis_namespace: str
) -> None:
    store = PipelineRunStore(client, settings=RedisSettings(key_prefix=redis_namespace))
    run, _ = begin(PIPELINE, run_id="run-1", flag="checkout", now=NOW, actor="ana", command_id="c1")
    assert (await store.load("run-1")).run is None
    await store.index("checkout", "run-1", 1)
    message = OutboxMessage("rollout.decisions", "checkout", b"{}", "m1")
    assert await store.save("run-1", 0, run, [message])
    assert not await store.save("run-1", 0, run, [message])  # a stale revision: a conflict
    loaded = await store.load("run-1")
    assert loaded.rev == 1
    assert loaded.run == run  # the pipeline, its plans, overrides and gates, read back whole
    assert [m.id for m in await store.pending("run-1")] == ["m1"]
    assert await store.published("run-1", ["m1"]) == 1
    assert await store.pending("run-1") == []
    await store.index("checkout", "run-2", 2)
    assert await store.runs_of("checkout") == ["run-2", "run-1"]
    assert await store.with_runs(["checkout", "search", "checkout@staging"]) == {"checkout"}
    assert await store.with_runs([]) == set()
    assert await store.running() == {"run-1", "run-2"}
    over = run.model_copy(update={"phase": RunPhase.COMPLETED})
    assert await store.save("run-1", 1, over, [])
    await store.finished("run-1")
    assert await store.running() == {"run-2"}
