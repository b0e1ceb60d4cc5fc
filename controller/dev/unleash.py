"""A real Unleash server for the tests and the benchmark: unleash-server from npm on PostgreSQL.

PostgreSQL is a test-owned cluster (:mod:`controller.dev.postgres`) unless
``UNLEASH_POSTGRES_URL`` names one (:func:`provide_postgres`).

``make unleash`` installs the pinned ``unleash-server`` into ``.unleash/``;
``ops/unleash/server.js`` starts it, creating its database first. Each
:class:`UnleashServer` gets a fresh database (migrated at its first start) and
a free port, and can be stopped and started again on both, to play an outage.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from controller.adapters.http_client import answers_ok
from controller.dev.embedded import ServiceUnavailable
from controller.dev.postgres import PostgresServer
from controller.dev.processes import LOCALHOST, ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
SERVER_JS = ROOT / "ops" / "unleash" / "server.js"
OPEN_SOURCE_ENVIRONMENTS = ("development", "production")
"""The environments open-source unleash-server serves (it refuses to create more)."""
START_TIMEOUT = 180.0
"""The first start migrates a fresh database: about 10 s here, more on a busy machine."""


def unleash_home() -> Path:
    return Path(os.environ.get("UNLEASH_HOME", ROOT / ".unleash"))


def provide_postgres() -> tuple[str, Callable[[], None], str]:
    """``(url, stop, description)`` of the PostgreSQL server Unleash's databases go on.

    ``UNLEASH_POSTGRES_URL`` names an existing server (trust auth, user postgres);
    otherwise a test-owned cluster of Debian's PostgreSQL is started.
    """
    external = os.environ.get("UNLEASH_POSTGRES_URL", "").strip()
    if external:
        return external, lambda: None, f"external PostgreSQL from UNLEASH_POSTGRES_URL={external}"
    server = PostgresServer().start()
    return server.url, server.stop, server.description


class UnleashServer:
    """One unleash-server process with its own database, admin and client tokens."""

    def __init__(
        self, workdir: Path, *, postgres_url: str, environment: str = "development"
    ) -> None:
        node = shutil.which("node")
        if node is None:
            raise ServiceUnavailable("no Unleash: `node` is not on PATH (Node 20 is needed)")
        if not (unleash_home() / "node_modules" / "unleash-server").is_dir():
            raise ServiceUnavailable(
                f"no Unleash: unleash-server is not installed in {unleash_home()};"
                " run `make unleash` (npm install of the pinned unleash-server)"
            )
        self.node = node
        self.environment = environment
        self.postgres_url = postgres_url
        self.port = free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        suffix = uuid.uuid4().hex[:12]
        self.database = f"unleash_{suffix}"
        self.admin_token = f"*:*.admin{suffix}"
        self.client_tokens = {
            env: f"default:{env}.client{suffix}"
            for env in dict.fromkeys((environment, *OPEN_SOURCE_ENVIRONMENTS))
        }
        """A client token per environment: an SDK reads the environment its token names."""
        self.client_token = self.client_tokens[environment]
        self.log_path = workdir / "unleash.log"
        self._proc: ManagedProcess | None = None

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": f"{self.postgres_url}/{self.database}",
            "PORT": str(self.port),
            "INIT_ADMIN_API_TOKENS": self.admin_token,
            "INIT_CLIENT_API_TOKENS": ",".join(self.client_tokens.values()),
            "UNLEASH_HOME": str(unleash_home()),
        }

    def start(self, timeout: float = START_TIMEOUT) -> UnleashServer:
        """Start the server and return once ``/health`` answers."""
        self._proc = ManagedProcess([self.node, str(SERVER_JS)], self.log_path, env=self._env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if answers_ok(f"{self.url}/health", timeout_s=1.0):
                return self
            if not self._proc.running():
                raise ServiceUnavailable(
                    f"unleash-server exited at start:\n{self._proc.log_tail()}"
                )
            time.sleep(0.2)
        self._proc.stop()
        raise ServiceUnavailable(f"unleash-server not healthy in {timeout:.0f} s")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def drop(self) -> None:
        """Stop the server and drop its database; a failure is only logged in its log file."""
        self.stop()
        with self.log_path.open("ab") as log:
            subprocess.run(  # noqa: S603 - our own argv
                [self.node, str(SERVER_JS), "--drop-database"],
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
            )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    @property
    def description(self) -> str:
        return f"unleash-server (npm, {unleash_home()}) at {self.url} on database {self.database}"
