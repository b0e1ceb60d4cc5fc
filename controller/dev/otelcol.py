"""The OpenTelemetry Collector between an app and Kafka, for the tests and benchmarks.

``make otelcol`` builds it with the Collector's own builder from Go modules
(``ops/otelcol/builder-config.yaml``: the otlp receiver, the batch processor and
contrib's kafka exporter) into ``.otelcol/``. It runs with
``ops/otelcol/config.yaml``, the configuration docs/otel.md shows, unchanged:
what differs per run (ports, brokers, topics) is given in the environment
variables that file names, as an operator would.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Self

import yaml

from controller.dev.processes import (
    LOCALHOST,
    ManagedProcess,
    ServedProcess,
    ServiceUnavailable,
    free_port,
    tcp_connectable,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "ops" / "otelcol" / "config.yaml"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
"""A SIGTERM drains the exporter's queue to Kafka first; past this it is killed."""
READY = "Everything is ready"
"""What the Collector logs once every pipeline runs."""
_VARIABLE = re.compile(r"\$\{env:([A-Z0-9_]+)(?::-[^}]*)?\}")


def otelcol_binary() -> Path:
    """Where ``make otelcol`` put the Collector (``OTELCOL_BINARY`` overrides)."""
    return Path(os.environ.get("OTELCOL_BINARY", ROOT / ".otelcol" / "otelcol-rollouts"))


def otelcol_installed() -> bool:
    return os.access(otelcol_binary(), os.X_OK)


def require_otelcol() -> Path:
    """The Collector's binary; ServiceUnavailable, saying how to build it, without one."""
    if not otelcol_installed():
        raise ServiceUnavailable(
            f"no OpenTelemetry Collector at {otelcol_binary()}: run `make otelcol` (Go 1.25 "
            "or newer builds it from ops/otelcol/builder-config.yaml)"
        )
    return otelcol_binary()


def config_variables(config: Path = CONFIG) -> set[str]:
    """The environment variables a Collector configuration's values read (``${env:NAME}``)."""
    return set(_VARIABLE.findall(" ".join(_strings(yaml.safe_load(config.read_text("utf-8"))))))


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [text for key, value in node.items() for text in _strings([key, value])]
    if isinstance(node, list):
        return [text for item in node for text in _strings(item)]
    return [node] if isinstance(node, str) else []


def collector_variables(
    *, ports: tuple[int, int, int], brokers: str, topics: tuple[str, str]
) -> dict[str, str]:
    """The environment a run gives the configuration: OTLP/HTTP, OTLP/gRPC and metrics
    ports on 127.0.0.1, the brokers, the spans and logs topics."""
    http, grpc, metrics = ports
    spans, logs = topics
    return {
        "OTLP_HTTP_ENDPOINT": f"{LOCALHOST}:{http}",
        "OTLP_GRPC_ENDPOINT": f"{LOCALHOST}:{grpc}",
        "KAFKA_BROKERS": brokers,
        "OTLP_SPANS_TOPIC": spans,
        "OTLP_LOGS_TOPIC": logs,
        "OTELCOL_METRICS_HOST": LOCALHOST,
        "OTELCOL_METRICS_PORT": str(metrics),
    }


class Collector(ServedProcess):
    """One Collector on 127.0.0.1 sending to ``brokers``; its ports are chosen once.

    ``stop()``: the receiver closes, what was accepted is sent to Kafka, then it exits;
    ``kill()``: what its in-memory queue held is lost, as in any crash of a Collector.

    ``start()`` after ``stop()`` listens on the same ports, as a restarted
    Collector behind a fixed address does, so the app's exporter finds it again.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        brokers: str,
        spans_topic: str = "otlp_spans",
        logs_topic: str = "otlp_logs",
        config: Path = CONFIG,
        startup_timeout: float = START_TIMEOUT,
    ) -> None:
        self.binary = require_otelcol()
        self.workdir, self.config, self.startup_timeout = workdir, config, startup_timeout
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.variables = collector_variables(
            ports=(self.http_port, self.grpc_port, self.metrics_port),
            brokers=brokers,
            topics=(spans_topic, logs_topic),
        )
        self._process: ManagedProcess | None = None
        self.started_in: float | None = None

    @property
    def otlp_http_url(self) -> str:
        """Base URL of the OTLP/HTTP receiver (``/v1/traces``, ``/v1/logs``)."""
        return f"http://{LOCALHOST}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        """The Collector's own metrics (``otelcol_exporter_sent_spans_total`` and others)."""
        return f"http://{LOCALHOST}:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        return self.workdir / "otelcol.log"

    def start(self) -> Self:
        """Start it (no-op if running); return once every pipeline runs and the port answers."""
        if self.running():
            return self
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.variables}
        argv = [str(self.binary), f"--config={self.config}"]
        # Measured before the start: a loaded machine may run the Collector up to its
        # ready line before this process is scheduled again, and a restart appends to
        # the log of the run before.
        log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._process = ManagedProcess(argv, self.log_path, env=env, stop_timeout=STOP_TIMEOUT)
        self._wait_until_ready(self._process, log_from)
        self.started_in = time.monotonic() - began
        return self

    def _wait_until_ready(self, process: ManagedProcess, log_from: int) -> None:
        deadline = time.monotonic() + self.startup_timeout
        problem = "not ready"
        while time.monotonic() < deadline:
            if not process.running():
                problem = f"exited with code {process.returncode}"
                break
            logged, listening = (
                self._logged_ready(log_from),
                tcp_connectable(LOCALHOST, self.http_port),
            )
            if logged and listening:
                return
            problem = (
                f"not ready within {self.startup_timeout:.0f} s (logged {READY!r}: {logged}, "
                f"OTLP/HTTP port {self.http_port} answering: {listening})"
            )
            time.sleep(0.1)
        raise self._failed(process, "the OpenTelemetry Collector did not start", problem)

    def _logged_ready(self, log_from: int) -> bool:
        with self.log_path.open("rb") as log:
            log.seek(log_from)
            return READY.encode() in log.read()

    def __repr__(self) -> str:
        return f"<Collector {self.otlp_http_url} running={self.running()}>"
