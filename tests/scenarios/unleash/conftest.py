"""The Unleash scenarios' people and apps: someone at the admin API, an app on the real SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from controller.dev.unleash import UnleashServer
from tests.scenarios.unleash.unleash_kit import App, Person


@pytest.fixture
async def person(unleash_server: UnleashServer) -> AsyncIterator[Person]:
    """Someone at Unleash's admin API, as the Unleash scenarios' operator."""
    someone = Person(unleash_server)
    yield someone
    await someone.close()


@pytest.fixture
def app(unleash_server: UnleashServer, tmp_path: Path) -> Iterator[App]:
    """An app with the real UnleashClient SDK and the exposure helper."""
    sdk = App(unleash_server, tmp_path / "sdk-cache")
    yield sdk
    sdk.close()
