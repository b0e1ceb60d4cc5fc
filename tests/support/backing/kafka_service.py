"""Which broker the tests run on, and the one Apache Kafka node a session's workers share.

The tests run on Apache Kafka (``make kafka``'s jars) under CI and wherever the jars are
installed; missing jars under CI are a missing service, never a silent fall back. A
machine without them (a newcomer's, with no Java) runs on the embedded tansu broker.
``RC_TEST_BROKER=kafka`` or ``=tansu`` chooses either way.

A Kafka node takes seconds of both cores to start, so the workers of one session share
one: the first worker that needs it starts it under a file lock and writes its address
to a state file in the session's shared folder; the others read it. The process that
owns the session (the xdist controller, or pytest itself without workers) stops it at
the end (:func:`stop_shared_kafka`), since a worker may end while others still test.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from controller.dev.broker import start_embedded_broker
from controller.dev.kafka_broker import KafkaBroker, kafka_installed
from controller.dev.processes import ManagedProcess, ServiceUnavailable, tcp_connectable

BROKER_VARIABLE = "RC_TEST_BROKER"
Broker = Literal["kafka", "tansu"]
_STATE = "kafka.json"
_STOP_TIMEOUT = 30.0

_started_here: dict[int, ManagedProcess] = {}
"""The shared nodes this process started, so that it can stop its own child directly."""


def chosen_broker() -> Broker:
    """``RC_TEST_BROKER`` when set; else Apache Kafka under CI or where its jars are, else
    the embedded tansu broker."""
    chosen = os.environ.get(BROKER_VARIABLE, "").strip().lower()
    if chosen in ("kafka", "tansu"):
        return "kafka" if chosen == "kafka" else "tansu"
    if chosen:
        raise ServiceUnavailable(f"{BROKER_VARIABLE}={chosen!r}: expected 'kafka' or 'tansu'")
    return "kafka" if os.environ.get("CI") or kafka_installed() else "tansu"


@dataclass(frozen=True, slots=True)
class SharedNode:
    """What the state file says about the session's node."""

    bootstrap: str
    pid: int
    log: str
    started_in: float
    rss_bytes: int | None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_state(shared_dir: Path) -> SharedNode | None:
    try:
        return SharedNode(**json.loads((shared_dir / _STATE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _alive(node: SharedNode) -> bool:
    host, _, port = node.bootstrap.rpartition(":")
    return _pid_alive(node.pid) and tcp_connectable(host, int(port))


def shared_kafka(shared_dir: Path) -> SharedNode:
    """The session's Apache Kafka node: started by the first caller, found by the others."""
    shared_dir.mkdir(parents=True, exist_ok=True)
    with _locked(shared_dir / "kafka.lock"):
        found = _read_state(shared_dir)
        if found is not None and _alive(found):
            return found
        if found is not None:
            raise RuntimeError(
                f"the session's Apache Kafka node (pid {found.pid}) is gone; log: {found.log}"
            )
        broker = KafkaBroker(shared_dir / "kafka").start()
        assert broker.process is not None  # start() returned, so it runs
        node = SharedNode(
            bootstrap=broker.bootstrap,
            pid=broker.process.detach(),
            log=str(broker.log_path),
            started_in=round(broker.started_in or 0.0, 2),
            rss_bytes=broker.rss_bytes(),
        )
        _started_here[node.pid] = broker.process
        (shared_dir / _STATE).write_text(json.dumps(asdict(node)), encoding="utf-8")
        return node


def stop_shared_kafka(shared_dir: Path) -> None:
    """Stop the session's node if one was started: SIGTERM, then SIGKILL after 30 s."""
    node = _read_state(shared_dir)
    if node is None:
        return
    own = _started_here.pop(node.pid, None)
    if own is not None:
        own.stop(_STOP_TIMEOUT)
        return
    _signal_group(node.pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT
    while _pid_alive(node.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(node.pid):
        _signal_group(node.pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The node leads its own process group (ManagedProcess starts a new session).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie waiting for its parent to reap it has stopped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def describe(node: SharedNode) -> str:
    rss = f"{node.rss_bytes / 2**20:.0f} MiB" if node.rss_bytes else "unknown"
    return (
        f"Apache Kafka at {node.bootstrap} shared by the session's workers (pid {node.pid}, "
        f"started in {node.started_in:.1f} s, RSS {rss} at start, log {node.log})"
    )


def own_broker(
    workdir: Path, *, port: int | None = None, advertised_port: int | None = None
) -> tuple[str, ManagedProcess]:
    """A broker of the caller's own in ``workdir`` (on ``port`` if given, telling clients to
    connect to ``advertised_port``, a proxy in front of it, if given), of the kind the session
    runs on: ``(bootstrap, process)``, for the tests that stop, hang or kill it."""
    if chosen_broker() == "tansu":
        return start_embedded_broker(workdir, port=port, advertised_port=advertised_port)
    broker = KafkaBroker(workdir, port=port, advertised_port=advertised_port).start()
    assert broker.process is not None  # start() returned, so it runs
    return broker.bootstrap, broker.process
