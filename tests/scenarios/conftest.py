"""The scenario fixture: one rollout world per test, on the real broker and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.scenarios.harness import Scenario


@pytest.fixture
async def scenario(
    kafka_bootstrap: str,
    redis_url: str,
    topic_factory: Callable[..., Awaitable[str]],
    redis_namespace: str,
    tmp_path: Path,
) -> AsyncIterator[Scenario]:
    topics = {"events": await topic_factory("events", partitions=4)}
    for name in ("commands", "monitors", "flag_state", "decisions", "alerts", "dlq"):
        topics[name] = await topic_factory(name, partitions=2 if name == "commands" else 1)
    async with Scenario(
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        prefix=redis_namespace,
        topics=topics,
        workdir=tmp_path,
    ) as world:
        yield world
