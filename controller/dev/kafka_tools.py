"""Apache Kafka's operator commands, run from the jars ``make kafka`` installed.

Kafka's distribution wraps each command in a ``bin/kafka-*.sh`` script; Maven
Central has the jars, not the scripts. :func:`tool_argv` is what those scripts
run: the command's main class with the jars in ``.kafka/libs`` on the class
path, and log4j's warnings on stderr, so stdout holds the command's answer alone.
``rollout-controller dev kafka-tool NAME ARGS`` runs one; ``NAME`` is the
script's (``kafka-consumer-groups``, ``kafka-consumer-groups.sh`` and
``consumer-groups`` are the same).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from controller.dev.kafka_broker import java_binary, kafka_installed, kafka_libs
from controller.dev.processes import ServiceUnavailable

KAFKA_TOOLS: dict[str, str] = {
    "configs": "kafka.admin.ConfigCommand",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
    "dump-log": "kafka.tools.DumpLogSegments",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "log-dirs": "org.apache.kafka.tools.LogDirsCommand",
    "topics": "org.apache.kafka.tools.TopicCommand",
}
"""Each command by its script's name (less ``kafka-`` and ``.sh``): its main class."""

TOOL_JVM_OPTIONS = ("-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")

_TOOLS_LOG4J2 = """\
status = error
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
"""
"""Kafka's own tools-log4j2 in effect: warnings and errors to stderr."""


def tool_name(name: str) -> str:
    """``kafka-consumer-groups.sh``, ``kafka-consumer-groups`` or ``consumer-groups``:
    ``consumer-groups``; ValueError naming the known ones for any other name."""
    short = name.removesuffix(".sh").removeprefix("kafka-")
    if short not in KAFKA_TOOLS:
        known = ", ".join(f"kafka-{tool}" for tool in KAFKA_TOOLS)
        raise ValueError(f"no Kafka command {name!r}; known: {known}")
    return short


def tool_argv(name: str, args: Sequence[str], *, log4j_config: Path | None = None) -> list[str]:
    """The ``java`` command line that runs Kafka's command ``name`` with ``args``.

    ServiceUnavailable, saying what to install, without Java or without the jars;
    ValueError for a name that is no Kafka command.
    """
    main = KAFKA_TOOLS[tool_name(name)]
    if not kafka_installed():
        raise ServiceUnavailable(
            f"no Apache Kafka tools: the jars are not in {kafka_libs()}; run `make kafka`"
        )
    log4j = () if log4j_config is None else (f"-Dlog4j2.configurationFile={log4j_config}",)
    classpath = f"{kafka_libs()}/*"
    return [java_binary(), *TOOL_JVM_OPTIONS, *log4j, "-cp", classpath, main, *args]


def run_tool(
    name: str, args: Sequence[str], *, timeout: float | None = None, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run Kafka's command ``name`` with ``args``; with ``capture``, its output is returned.

    Some of Kafka's commands exit 0 after printing an error (``kafka-consumer-groups``
    among them), so a caller that must know reads the output too.
    """
    with tempfile.TemporaryDirectory(prefix="kafka-tool-") as workdir:
        config = Path(workdir) / "tools-log4j2.properties"
        config.write_text(_TOOLS_LOG4J2, encoding="utf-8")
        return subprocess.run(  # noqa: S603 - the argv is Kafka's own main class and args
            tool_argv(name, args, log4j_config=config),
            stdin=None if not capture else subprocess.DEVNULL,
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
        )
