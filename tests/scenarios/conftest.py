"""The scenario fixture: one rollout world per test, on the real broker and Redis.

And the browser the console and report tests drive: Debian's ``chromium``,
launched by the ``playwright`` package's bundled driver. The fixtures of one
folder's scenarios live beside them (``brokers/conftest.py``, ``unleash/conftest.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.scenarios.harness import Scenario, scenario_topics


@pytest.fixture
async def scenario(
    kafka_bootstrap: str,
    redis_url: str,
    topic_factory: Callable[..., Awaitable[str]],
    redis_namespace: str,
    tmp_path: Path,
) -> AsyncIterator[Scenario]:
    topics = await scenario_topics(topic_factory)
    async with Scenario(
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        prefix=redis_namespace,
        topics=topics,
        workdir=tmp_path,
    ) as world:
        yield world


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    """Debian's Chromium; missing, the test fails under CI and is skipped elsewhere.

    ``chromium`` is session-scoped, so it is resolved (or the test skipped) before
    the scenario's broker topics and observers are set up.
    """
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield launched
        finally:
            await launched.close()
