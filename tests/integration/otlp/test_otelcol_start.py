"""Starting the real OpenTelemetry Collector when this process is slower than it.

On a loaded machine the Collector may log that it is ready before the process that
started it runs again; a start, or a restart appending to the same log, must still
see that line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.dev import otelcol
from controller.dev.otelcol import READY, Collector, require_otelcol
from controller.dev.processes import ManagedProcess, ServiceUnavailable
from tests.conftest import _service_unavailable
from tests.support.waiting import eventually_sync

pytestmark = pytest.mark.integration


@pytest.fixture
def binary(pytestconfig: pytest.Config) -> Path:
    try:
        return require_otelcol()
    except ServiceUnavailable as exc:
        _service_unavailable(pytestconfig, exc)


class _Descheduled(ManagedProcess):
    """Returns only once the child has logged that it is ready: the parent was not
    scheduled again until then."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

        def ready_logged_this_run() -> bool:
            # Each start appends its command line, "$ argv", then what the run logs.
            this_run = self.log_path.read_text("utf-8", errors="replace").rsplit("$ ", 1)[-1]
            return READY in this_run

        eventually_sync(ready_logged_this_run, timeout=120, what="the Collector's ready line")


def test_a_collector_ready_before_its_starter_looks_is_seen_ready(
    binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a Collector whose starter is not scheduled again until it has logged that it
    # is ready (no broker is needed to start: the exporter connects on first use)
    monkeypatch.setattr(otelcol, "ManagedProcess", _Descheduled)
    collector = Collector(tmp_path, brokers="127.0.0.1:1", startup_timeout=30)
    # When it starts, and restarts appending to the same log
    with collector.start():
        assert collector.running()
        collector.restart()
        # Then each start returns with the Collector running
        assert collector.running()
        assert collector.log_path.read_text("utf-8").count(READY) == 2
