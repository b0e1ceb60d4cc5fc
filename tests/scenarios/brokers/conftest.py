"""The broker scenarios' own broker: one that loses its data on demand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scenarios.brokers.lost_broker import RestartableBroker, started


@pytest.fixture
def restartable_broker(tmp_path: Path) -> Iterator[RestartableBroker]:
    """A broker of the test's own, which :meth:`~RestartableBroker.lose_data` brings back
    empty; missing, the test fails under CI and is skipped elsewhere."""
    yield from started(RestartableBroker(tmp_path / "kafka"))
