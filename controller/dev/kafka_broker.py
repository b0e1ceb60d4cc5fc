"""Apache Kafka's own broker, one KRaft node, for the tests and ``dev up --broker kafka``.

``make kafka`` resolves ``org.apache.kafka:kafka_2.13`` and its runtime
dependencies with Maven (``ops/kafka/pom.xml``) into ``.kafka/libs``; this
module runs them with the ``java`` on PATH (17 or newer). A
:class:`KafkaBroker` owns a working directory: its ``server.properties``, its
log4j configuration, its log and its data. The first start formats the
store (``kafka.tools.StorageTool format``); later starts reuse it, on the same
ports, so a broker that was killed with SIGKILL comes back with its data, as
a real one does after a crash.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from controller.dev.broker import kafka_metadata_ok
from controller.dev.processes import (
    LOCALHOST,
    ManagedProcess,
    ServedProcess,
    ServiceUnavailable,
    free_port,
    tcp_connectable,
)

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180.0
"""9 to 21 s, formatting included, on a 2-core machine busy with other work."""

JVM_OPTIONS = (
    "-Xms64m",
    "-Xmx512m",
    # One collector thread and the quick compiler only: on a small shared machine the
    # JIT's and the collector's threads cost more than the peak speed they buy.
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)

FORMAT_JVM_OPTIONS = ("-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
"""Formatting a new store is a second of class loading: the quick compiler alone takes a
third off its CPU time (1.4 to 0.9 s), as for the broker."""

BROKER_PROPERTIES: dict[str, str] = {
    "process.roles": "broker,controller",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    # One node: every internal topic has one replica, and few partitions, because
    # creating the 50 of __consumer_offsets delays the first group join by seconds.
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    # The tests' consumers use 3 s sessions so that a crashed member's partitions move
    # quickly; Apache Kafka refuses less than 6 s unless its operator lowers this bound.
    "group.min.session.timeout.ms": "1000",
    # Topics are created on purpose (the daemon's kafka.create_topics, kafka-init, the
    # tests' topic factory), never as a side effect of a producer or a metadata request.
    "auto.create.topics.enable": "false",
    "num.partitions": "1",
    # The log cleaner looks for compactable logs every 0.5 s rather than 15 s, so that a
    # compacted topic whose segments roll quickly is cleaned within a test.
    "log.cleaner.backoff.ms": "500",
}
"""What every test broker runs with; ``KafkaBroker(properties=...)`` adds or overrides."""

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def kafka_libs() -> Path:
    """Where ``make kafka`` put the broker's jars (``KAFKA_LIBS`` overrides)."""
    return Path(os.environ.get("KAFKA_LIBS", ROOT / ".kafka" / "libs"))


def kafka_installed() -> bool:
    """Whether the jars are there: ``make kafka`` leaves the broker's own jar among them."""
    return any(kafka_libs().glob("kafka_2.13-*.jar"))


def java_binary() -> str:
    """``$JAVA_HOME/bin/java``, else ``java`` on PATH; ServiceUnavailable without one."""
    home = os.environ.get("JAVA_HOME", "").strip()
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise ServiceUnavailable(
            "no Apache Kafka: no `java` on PATH (Kafka 4 needs Java 17 or newer: "
            "`apt-get install openjdk-17-jre-headless`)"
        )
    return found


def _require_libs() -> Path:
    if not kafka_installed():
        raise ServiceUnavailable(
            f"no Apache Kafka: its jars are not in {kafka_libs()}; run `make kafka` "
            "(Maven resolves org.apache.kafka:kafka_2.13 from ops/kafka/pom.xml)"
        )
    return kafka_libs()


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64 without padding (22 characters).

    Never one that starts with ``-`` (1 in 64 would): ``StorageTool``'s argument parser
    takes ``--cluster-id -x...`` for an option and refuses to format; Kafka's own
    ``Uuid.randomUuid`` draws again for the same reason.
    """
    while True:
        drawn = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not drawn.startswith("-"):
            return drawn


def render_properties(properties: Mapping[str, str]) -> str:
    """``server.properties`` text, one ``key=value`` a line, in the given order."""
    return "".join(f"{key}={value}\n" for key, value in properties.items())


class KafkaBroker(ServedProcess):
    """One Apache Kafka node (broker and KRaft controller) on 127.0.0.1, data in ``workdir``.

    Both ports are chosen once: ``start()`` after ``stop()`` or ``kill()`` serves the same
    address with the same data. ``advertised_port`` tells clients to connect elsewhere
    (a proxy in front of it). ``properties`` add to or override :data:`BROKER_PROPERTIES`.
    ``stop()`` is a controlled shutdown (SIGKILL after 30 s); after ``kill()``, what the
    broker had not flushed is recovered at the next start.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        advertised_port: int | None = None,
        properties: Mapping[str, str] | None = None,
        startup_timeout: float = START_TIMEOUT,
        node_id: int = 1,
        controller_port: int | None = None,
        quorum_voters: str | None = None,
        cluster_id: str | None = None,
    ) -> None:
        """``node_id``, ``controller_port``, ``quorum_voters`` and ``cluster_id`` make it one
        node of a cluster (:class:`~controller.dev.kafka_cluster.KafkaCluster`); alone, it
        is node 1 and its own quorum, formatted with a new cluster id."""
        self.libs = _require_libs()
        self.java = java_binary()
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.node_id = node_id
        self.controller_port = controller_port if controller_port is not None else free_port()
        self._voters = quorum_voters or f"{node_id}@{LOCALHOST}:{self.controller_port}"
        self._cluster_id = cluster_id
        self.advertised_port = advertised_port or self.port
        self.startup_timeout = startup_timeout
        self._extra = dict(properties or {})
        self._process: ManagedProcess | None = None
        self.started_in: float | None = None
        """Seconds the last ``start()`` took, formatting included."""

    @property
    def bootstrap(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "kafka.log"

    @property
    def description(self) -> str:
        pid = self._process.pid if self._process is not None else None
        return f"Apache Kafka at {self.bootstrap} (pid {pid}, log {self.log_path})"

    def properties(self) -> dict[str, str]:
        ports = {
            "listeners": f"PLAINTEXT://{self.bootstrap},CONTROLLER://{LOCALHOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{LOCALHOST}:{self.advertised_port}",
            "controller.quorum.voters": self._voters,
            "log.dirs": str(self.data_dir),
            "node.id": str(self.node_id),
        }
        return {**BROKER_PROPERTIES, **ports, **self._extra}

    def _java(self, main: str, *args: str, heap: tuple[str, ...] = JVM_OPTIONS) -> list[str]:
        log4j = f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}"
        classpath = f"{self.libs}/*"
        return [self.java, *heap, log4j, "-cp", classpath, main, *args]

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "log4j2.properties").write_text(_LOG4J2, encoding="utf-8")
        config = self.workdir / "server.properties"
        config.write_text(render_properties(self.properties()), encoding="utf-8")
        return config

    def _format(self, config: Path) -> None:
        """Format the KRaft store once; a store already there is kept (a restart)."""
        if (self.data_dir / "meta.properties").is_file():
            return
        cluster_id = self._cluster_id or new_cluster_id()
        args = ["format", "--cluster-id", cluster_id, "--config", str(config)]
        done = subprocess.run(  # noqa: S603 - our own argv
            self._java("kafka.tools.StorageTool", *args, heap=FORMAT_JVM_OPTIONS),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self.startup_timeout,
            check=False,
        )
        if done.returncode != 0:
            output = f"{done.stdout}{done.stderr}"
            raise ServiceUnavailable(f"formatting Kafka's store failed:\n{output}")

    def start(self) -> Self:
        """Start the node (no-op if running) and return once it answers a metadata request."""
        if self.running():
            return self
        began = time.monotonic()
        self.launch()
        self.wait_until_serving()
        self.started_in = time.monotonic() - began
        return self

    def launch(self) -> None:
        """Format the store if new and start the process, without waiting for it to serve
        (a cluster's nodes serve only once a majority of its quorum runs)."""
        config = self._write_config()
        self._format(config)
        self._process = ManagedProcess(
            self._java("kafka.Kafka", str(config)), self.log_path, stop_timeout=30.0
        )

    def wait_until_serving(self) -> None:
        """Return once the launched node answers a metadata request; RuntimeError with its
        log's tail (and the node killed) if it does not within the start timeout."""
        assert self._process is not None, "launch() first"
        self._wait_until_serving(self._process)

    def _wait_until_serving(self, process: ManagedProcess) -> None:
        deadline = time.monotonic() + self.startup_timeout
        problem = "not started"
        while time.monotonic() < deadline:
            if not process.running():
                problem = f"exited with code {process.returncode}"
                break
            if tcp_connectable(LOCALHOST, self.port):
                answer = kafka_metadata_ok(self.bootstrap, 5.0)
                if answer is None:
                    return
                problem = f"metadata request failed: {answer}"
            time.sleep(0.2)
        raise self._failed(process, f"Apache Kafka at {self.bootstrap} did not come up", problem)

    def dump_log_segments(self, topic: str, partition: int = 0) -> str:
        """What Kafka's own ``DumpLogSegments`` prints of the partition's log segments: a
        line per record batch (offsets, ``producerId``, ``producerEpoch``, sequence...)."""
        segments = sorted(str(p) for p in (self.data_dir / f"{topic}-{partition}").glob("*.log"))
        if not segments:
            raise ServiceUnavailable(f"no log segment of {topic}-{partition} in {self.data_dir}")
        tool = "kafka.tools.DumpLogSegments"
        heap = ("-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
        done = subprocess.run(  # noqa: S603 - our own argv
            self._java(tool, "--files", ",".join(segments), heap=heap),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

    def rss_bytes(self) -> int | None:
        """The broker's resident memory now, from /proc; None when it is not running."""
        if self._process is None or not self._process.running():
            return None
        try:
            status = Path(f"/proc/{self._process.pid}/status").read_text(encoding="ascii")
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None

    def __repr__(self) -> str:
        return f"<KafkaBroker {self.bootstrap} running={self.running()}>"


def start_kafka_broker(workdir: Path) -> tuple[str, ManagedProcess]:
    """Start a fresh Apache Kafka node in ``workdir``: ``(bootstrap, process)``.

    Fresh because what starts beside it is too: topics and offsets left by an earlier
    run would not match a new Redis.
    """
    shutil.rmtree(workdir / "data", ignore_errors=True)
    broker = KafkaBroker(workdir).start()
    assert broker.process is not None  # start() returned, so it runs
    return broker.bootstrap, broker.process
