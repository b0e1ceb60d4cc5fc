"""``rollout-controller run`` starts its loop with the interpreter's turns at 1 ms.

Under a flood of the HTTP routes the intake's threads want the interpreter all
the time; at CPython's 5 ms the daemon's loop waited that long at each wake-up
(docs/architecture.md, *A kill under load*).
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from controller.cli import main
from controller.daemon.running import wiring
from controller.process import logs


def test_the_daemon_loop_starts_with_the_interpreter_handed_over_every_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[float] = []

    async def run(*_: Any, **__: Any) -> int:
        seen.append(sys.getswitchinterval())
        return 0

    monkeypatch.setattr(wiring, "run", run)
    monkeypatch.setattr(logs, "configure", lambda _: None)
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)  # CPython's own
    try:
        assert main(["run"]) == 0
    finally:
        sys.setswitchinterval(before)
    assert seen == [pytest.approx(0.001)]
