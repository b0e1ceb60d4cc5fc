"""bench/suite_cpu.py's kinds of process, from command lines as /proc shows them."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.unit.bench import load


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load("suite_cpu.py")


CASES = {
    "a daemon given a config file in pytest's folder": (
        "/w/.venv/bin/python -m controller run --config /tmp/pytest-of-root/p/c.yaml",
        "python",
        "daemons",
    ),
    "a Kafka node": (
        "/usr/bin/java -Xms64m -cp /w/.artifacts/kafka/libs/* kafka.Kafka /tmp/k/server.properties",
        "java",
        "Apache Kafka nodes",
    ),
    "Kafka formatting a store": (
        "/usr/bin/java -Xmx256m -cp /w/libs/* kafka.tools.StorageTool format --config x",
        "java",
        "Apache Kafka's tools (formatting a store, ...)",
    ),
    "a pytest-xdist worker": (
        "/w/.venv/bin/python -c import sys;exec(eval(sys.stdin.readline()))",
        "python",
        "pytest-xdist workers (tests, simulated apps, fixtures)",
    ),
    "rolloutctl, run as the tests run it": (
        "/w/.venv/bin/python -m controller.ctl.app status checkout",
        "python",
        "rolloutctl",
    ),
    "rolloutctl, as its console script": (
        "/w/.venv/bin/python /w/.venv/bin/rolloutctl status checkout",
        "python",
        "rolloutctl",
    ),
    "a daemon, as its console script": (
        "/w/.venv/bin/python /w/.venv/bin/rollout-controller run",
        "python",
        "daemons",
    ),
    "a daemon forked from a worker's forkserver (its command line is the forkserver's)": (
        "/w/.venv/bin/python -B -c from multiprocessing.forkserver import main; "
        "main(8, 9, ['tests.support.backing.warm_daemon', 'controller.cli'], **{})",
        "python",
        "daemons",
    ),
    "pytest itself": ("/w/.venv/bin/python -m pytest -n 3", "python", "pytest's own process"),
    "a Redis server": ("redis-server 127.0.0.1:6399", "redis-server", "Redis"),
    "a Python app of the tests": (
        "/w/.venv/bin/python /w/tests/otel/flask_app.py http://127.0.0.1:4318",
        "python",
        "other Python: flask_app.py",
    ),
    "a Python module": ("/usr/bin/python3 -m uvicorn app:app", "python3", "other Python: uvicorn"),
    "a Node.js app": (
        "node /w/tests/otel/node_app.mjs 4318",
        "node",
        "other Node.js: node_app.mjs",
    ),
    "a kernel thread (no command line)": ("", "kworker/1:1H", "other: kworker/1:1H"),
    "a program without arguments": ("/usr/bin/python3", "python3", "other: python3"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_process_is_of_the_kind_its_command_line_says(bench: ModuleType, case: str) -> None:
    command_line, name, kind = CASES[case]
    assert bench.kind_of(command_line, name) == kind
