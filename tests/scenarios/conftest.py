"""The scenario fixture: one rollout world per test, on the real broker and Redis.

And the browser the console and report tests drive: Debian's ``chromium``,
launched by the ``playwright`` package's bundled driver.
"""

from __future__ import annotations

import os
import shutil
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


CHROMIUM = "/usr/bin/chromium"


def _chromium() -> str | None:
    return shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium; missing, the test fails under CI and is skipped elsewhere."""
    executable = _chromium()
    if executable is None:
        message = "SERVICE MISSING: chromium (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield launched
        finally:
            await launched.close()
