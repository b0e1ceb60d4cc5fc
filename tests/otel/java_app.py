"""Where ``make java-app`` built the Java checkout app (``tests/otel/java``), and how to run it.

The app runs as a team runs a Java service: the OpenTelemetry Java agent on its
command line, configured by the standard ``OTEL_*`` variables, which say where
its spans go (the controller's OTLP/HTTP intake in the tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from controller.dev.kafka_broker import java_binary
from tests.support.backing.services import ServiceUnavailable

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("JAVA_APP_BUILD", ROOT / "tests" / "otel" / "java" / "target"))
HEAP = "-Xmx256m"
"""The app holds little; a bound keeps two of them good neighbours on a small machine."""
JIT = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
"""A test's JVM lives a few minutes: the client compiler alone and the serial collector
start one under the agent on about half the CPU (4.7 s of CPU against 8.6 s, to its first
answers) and leave the machine's two cores to the rest of the scenario."""


@dataclass(frozen=True)
class JavaApp:
    """Java, the app's jar (its libraries beside it) and the OpenTelemetry agent."""

    java: str
    jar: Path
    agent: Path

    def command(self, ofrep_url: str, flag: str, *options: str) -> list[str]:
        """The JVM running the app under the agent, for ``flag`` served at ``ofrep_url``."""
        agent = f"-javaagent:{self.agent}"
        jar = ["-jar", str(self.jar)]
        return [self.java, HEAP, *JIT, agent, *jar, ofrep_url, flag, *options]


def otel_env(otlp_endpoint: str) -> dict[str, str]:
    """The agent's configuration: traces to ``otlp_endpoint`` over OTLP/HTTP protobuf."""
    return {
        "OTEL_SERVICE_NAME": "checkout",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",  # the controller reads traces and logs only
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }


def java_app() -> JavaApp:
    """The built app; ServiceUnavailable without Java or without ``make java-app``'s build."""
    jar, agent = BUILD / "checkout.jar", BUILD / "agent" / "opentelemetry-javaagent.jar"
    if not (jar.is_file() and agent.is_file()):
        raise ServiceUnavailable(
            f"the Java checkout app is not built in {BUILD}: `make java-app` "
            "(Maven and Java 17, dependencies from Maven Central)"
        )
    try:
        java = java_binary()
    except ServiceUnavailable:
        raise ServiceUnavailable(
            "no `java` on PATH for the Java checkout app (Java 17: "
            "`apt-get install openjdk-17-jdk-headless`)"
        ) from None
    return JavaApp(java, jar, agent)
