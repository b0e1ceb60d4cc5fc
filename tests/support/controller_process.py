"""Run the real ``rollout-controller run`` as a process of its own, as an operator would.

Each run is forked from the worker's warm interpreter
(:mod:`tests.support.backing.warm_daemon`), where the environment allows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support.backing.services import ManagedProcess
from tests.support.backing.warm_daemon import WarmRun, can_fork
from tests.support.waiting import eventually_sync


class ControllerProcess:
    """The daemon, restartable; ``kill()`` is ``kill -9``, ``terminate()`` is SIGTERM.

    Each run is a :class:`WarmRun` (or, where it cannot be, a :class:`ManagedProcess`)
    appending to the same log.
    """

    def __init__(self, *, env: dict[str, str], log_path: Path, args: tuple[str, ...] = ()) -> None:
        self._env = {**os.environ, **env}
        self.log_path = log_path
        self._args = args  # after `run`: --config FILE
        self._proc: ManagedProcess | WarmRun | None = None
        self._run_starts_at = 0

    def start(self) -> ControllerProcess:
        self._run_starts_at = self.log_path.stat().st_size if self.log_path.exists() else 0
        if can_fork(self._env):
            self._proc = WarmRun(["run", *self._args], self.log_path, env=self._env)
        else:
            self._proc = ManagedProcess(
                [sys.executable, "-m", "controller", "run", *self._args],
                self.log_path,
                env=self._env,
            )
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, and the exit code (killed, hence negative, if it outlived ``timeout``)."""
        assert self._proc is not None
        self._proc.stop(timeout)
        code = self._proc.returncode
        assert code is not None
        return code

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, needle: str, timeout: float = 30) -> None:
        """Wait until the current run (not an earlier one) logs ``needle``."""

        def logged() -> bool:
            with self.log_path.open("rb") as log:
                log.seek(self._run_starts_at)
                if needle in log.read().decode(errors="replace"):
                    return True
            if not self.running:
                pytest.fail(f"exited before logging {needle!r}:\n{self.log_text()[-3000:]}")
            raise AssertionError(f"{needle!r} not logged:\n{self.log_text()[-3000:]}")

        eventually_sync(logged, timeout=timeout, what=f"{needle!r} in the log")

    def __enter__(self) -> ControllerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def controller_env(
    *, bootstrap: str, redis_url: str, prefix: str, events: str, dlq: str = "", group: str = ""
) -> dict[str, str]:
    """Environment for a daemon isolated to one test's topics and key namespace.

    The dead-letter topic defaults to ``<events>.dlq`` and the group to ``g-<prefix>``.
    """
    dlq = dlq or f"{events}.dlq"
    group = group or f"g-{prefix}"
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "REDIS_URL": redis_url,
        "RC_REDIS__KEY_PREFIX": prefix,
        "RC_TOPICS__EVENTS": events,
        "RC_TOPICS__DLQ": dlq,
        "RC_TOPICS__COMMANDS": f"{events}.commands",
        "RC_TOPICS__MONITORS": f"{events}.monitors",
        "RC_TOPICS__FLAG_STATE": f"{events}.flag-state",
        "RC_TOPICS__DECISIONS": f"{events}.decisions",
        "RC_TOPICS__ALERTS": f"{events}.alerts",
        "RC_KAFKA__GROUP_ID": group,
        "RC_KAFKA__SESSION_TIMEOUT_MS": "3000",
        "RC_KAFKA__HEARTBEAT_INTERVAL_MS": "300",
        "RC_INGEST__MAX_BATCH_RECORDS": "500",
        "RC_RETRY__MAX_SECONDS": "0.5",
        "RC_LOG__FORMAT": "json",
        "RC_HTTP__PORT": "0",
        "RC_HTTP__HEALTH_PORT": "0",
        "RC_SHUTDOWN_GRACE_SECONDS": "30",
    }
