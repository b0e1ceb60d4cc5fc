"""``rollout-controller dev up | down | status``: the product kept running, for your own flags.

``dev up`` starts the embedded broker (Apache Kafka with ``--broker kafka``), Redis
and (unless ``--no-model``) the model server side by side, makes an operator key,
writes a controller config and runs the controller, waits until it is ready, and leaves all of them
running in the background. It prints the ``export`` lines that point
``rolloutctl``, the app SDK and the examples at them (stdout, so ``eval
"$(rollout-controller dev up)"`` works; everything else goes to stderr).
``dev down`` stops them, the controller first; ``dev status`` says which run.
Everything lives in one directory (``--dir``, default ``.rollout-dev``):
the config, the keys, each process's log and ``state.json``. The controller
signs its decisions and flag states with a key of its own (``keys/dev-controller.key``),
so ``rolloutctl audit check --config`` of an export checks each decision. Both commands
are idempotent: ``dev up`` while up prints the exports again, ``dev down``
with nothing up says so and exits 0.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from controller.adapters.http_client import answers_ok
from controller.core.common import dump_yaml
from controller.core.trust import signing
from controller.ctl.operate import write_private_key
from controller.demo.devstate import STOP_ORDER, DevState, Process, forget, stop
from controller.dev.broker import start_embedded_broker
from controller.dev.kafka_broker import start_kafka_broker
from controller.dev.model_server import LLAMA_SERVER_MODULE, LLM_MODEL_ALIAS, start_llm_server
from controller.dev.processes import LOCALHOST, ManagedProcess, free_port
from controller.dev.redis_server import RedisServer

DEFAULT_DIR = Path(".rollout-dev")
DEFAULT_PORT = 8000
MAX_PORT = 65535
KEY_ID = "dev"
CONTROLLER_KEY_ID = "dev-controller"
"""The key the dev controller signs decisions and flag states with."""
READY_TIMEOUT = 90.0
STOP_TIMEOUT = {"controller": 20.0, "kafka": 30.0}
"""The controller drains (shutdown_grace_seconds) before it exits; Apache Kafka closes its
logs cleanly (a killed one recovers them at its next start); the others stop at once."""
INHERITED = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "LLM_BASE_URL")
"""Not passed to the controller: exports of an earlier ``dev up`` would override its config."""


@dataclass(frozen=True, slots=True)
class DevOptions:
    directory: Path = DEFAULT_DIR
    model: bool = True
    port: int | None = None
    broker: Literal["embedded", "kafka"] = "embedded"
    """The embedded tansu broker (no Java needed), or Apache Kafka (``make kafka``, Java 17)."""


Say = Callable[[str], None]


def _say(line: str) -> None:
    print(f"rollout-controller dev: {line}", file=sys.stderr, flush=True)


# -- up ---------------------------------------------------------------------------------


def up(options: DevOptions, say: Say = _say) -> int:
    """Start everything (unless it runs already) and print the exports; the exit code."""
    directory = options.directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    state = DevState.read(directory)
    if state is not None and all(state.running().values()):
        say(f"already up in {directory}")
        _print_exports(state)
        return 0
    if state is not None:  # partly gone: start afresh
        say("some processes of the last `dev up` are gone: stopping the rest, starting again")
        _stop_all(state, say)
    with contextlib.ExitStack() as stack:  # stops whatever started if anything fails
        processes, addresses = _start_services(directory, options, stack, say)
        state = _start_controller(directory, options, (processes, addresses), stack, say)
        for process in processes.values():
            process.detach()
        stack.pop_all()
    state.write(directory)
    say(f"up: the console is {state.console}")
    say(f"`rollout-controller dev down --dir {options.directory}` stops everything")
    _print_exports(state)
    return 0


def _start_services(
    directory: Path, options: DevOptions, stack: contextlib.ExitStack, say: Say
) -> tuple[dict[str, ManagedProcess], dict[str, str]]:
    """The broker, Redis and the model side by side (the model loads longest)."""

    def redis(workdir: Path) -> tuple[str, ManagedProcess]:
        server = RedisServer(workdir, persistent=False).start()
        assert server.process is not None  # started
        return server.url, server.process

    starters: dict[str, Callable[[Path], tuple[str, ManagedProcess]]] = {
        "kafka": start_kafka_broker if options.broker == "kafka" else start_embedded_broker,
        "redis": redis,
    }
    if options.model:
        starters["llm"] = start_llm_server
    with ThreadPoolExecutor(len(starters), thread_name_prefix="dev") as pool:
        futures = {name: pool.submit(start, directory / name) for name, start in starters.items()}
    processes: dict[str, ManagedProcess] = {}
    failures: list[BaseException] = []
    addresses: dict[str, str] = {}
    for name, future in futures.items():
        try:
            addresses[name], processes[name] = future.result()
        except Exception as exc:  # raised below, once every started one is on the stack
            failures.append(exc)
            continue
        stack.callback(processes[name].stop)
        say(f"{name} at {addresses[name]} (pid {processes[name].pid})")
    if failures:
        raise failures[0]
    return processes, addresses


def _start_controller(
    directory: Path,
    options: DevOptions,
    started: tuple[dict[str, ManagedProcess], dict[str, str]],
    stack: contextlib.ExitStack,
    say: Say,
) -> DevState:
    processes, addresses = started
    key, public = signing.generate_key()
    key_file = directory / "keys" / f"{KEY_ID}.key"
    key_file.unlink(missing_ok=True)  # a fresh key each time: the old one is trusted no more
    write_private_key(key_file, key)
    port, health_port = http_ports(options.port, is_free=_is_free, any_free=free_port)
    token = secrets.token_urlsafe(18)
    config = directory / "controller.yaml"
    settings = dev_config(
        addresses,
        public_key=public,
        ports=(port, health_port),
        token=token,
        signing_key=_controller_key(directory),
    )
    config.write_text(dump_yaml(settings, sort_keys=False), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in INHERITED and not k.startswith("RC_")}
    controller = ManagedProcess(
        [sys.executable, "-m", "controller", "run", "--config", str(config)],
        directory / "controller.log",
        env=env,
        stop_timeout=STOP_TIMEOUT["controller"],
    )
    stack.callback(controller.stop)
    url = f"http://{LOCALHOST}:{port}"
    _wait_ready(controller, url)
    say(f"controller at {url} (pid {controller.pid}, config {config})")
    processes["controller"] = controller
    state = DevState(console=f"{url}/ui?token={token}")
    for name, process in processes.items():
        marker = "controller" if name == "controller" else Path(process.args[0]).name
        if name == "llm":
            marker = LLAMA_SERVER_MODULE
        address = url if name == "controller" else addresses[name]
        state.processes[name] = Process(process.pid, marker, address, str(process.log_path))
    state.exports = {
        "KAFKA_BOOTSTRAP_SERVERS": addresses["kafka"],
        "REDIS_URL": addresses["redis"],
        "ROLLOUTCTL_URL": url,
        "ROLLOUTCTL_KEY": str(key_file),
        "ROLLOUTCTL_KEY_ID": KEY_ID,
        "ROLLOUTCTL_HEALTH_URL": f"http://{LOCALHOST}:{health_port}",
        # the reads of rolloutctl (status, report, ...) need the operator token
        "ROLLOUTCTL_TOKEN": token,
    }
    if "llm" in addresses:
        state.exports["LLM_BASE_URL"] = addresses["llm"]
    return state


def _controller_key(directory: Path) -> Path:
    """A fresh key the controller signs with, written (0600) in ``directory``'s keys."""
    key_file = directory / "keys" / f"{CONTROLLER_KEY_ID}.key"
    key_file.unlink(missing_ok=True)
    write_private_key(key_file, signing.generate_key()[0])
    return key_file


def dev_config(
    addresses: dict[str, str],
    *,
    public_key: str,
    ports: tuple[int, int],
    token: str,
    signing_key: Path | None = None,
) -> dict[str, Any]:
    """The controller's YAML settings: the default topics and keys, gates every few seconds;
    ``ports``: the HTTP port and the health listener's; ``signing_key``: the controller's
    own key file, which signs its decisions and flag states."""
    signed: dict[str, dict[str, str]] = {}
    if signing_key is not None:
        signed = {"signing": {"key_file": str(signing_key), "key_id": CONTROLLER_KEY_ID}}
    llm: dict[str, Any] = {"mode": "off"}
    if "llm" in addresses:
        llm = {
            "mode": "advisory",
            "base_url": addresses["llm"],
            "model": LLM_MODEL_ALIAS,
            # A 135M model on a busy laptop is slow; the gates must not give up on it.
            "timeout_seconds": 30.0,
        }
    return {
        "kafka": {"bootstrap_servers": addresses["kafka"], "events_partitions": 4},
        "redis": {"url": addresses["redis"]},
        "ingest": {"fetch_timeout_ms": 100},
        "engine": {"sweep_interval_seconds": 1.0, "operator_keys": {KEY_ID: public_key}},
        "llm": llm,
        "http": {
            "enabled": True,
            "host": LOCALHOST,
            "port": ports[0],
            "health_port": ports[1],
            "webhook_token": token,
        },
        "history": {"min_interval_seconds": 1.0},
        "log": {"level": "info", "format": "json"},
    } | signed


def http_ports(
    requested: int | None, *, is_free: Callable[[int], bool], any_free: Callable[[], int]
) -> tuple[int, int]:
    """The controller's HTTP port and its health listener's.

    The HTTP port is ``requested``, else 8000 (where ``rolloutctl`` looks by
    default) unless it is taken. The health port follows it, one above (where
    ``rolloutctl`` asks for the health listener), or any free port when that one
    is taken: a second stack, or ``--port``, never lands on the first one's 8001.
    """
    port = requested or (DEFAULT_PORT if is_free(DEFAULT_PORT) else any_free())
    beside = port + 1
    health = beside if beside <= MAX_PORT and is_free(beside) else any_free()
    while health == port:  # a free port drawn is never the HTTP one, even unbound yet
        health = any_free()
    return port, health


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def _wait_ready(controller: ManagedProcess, url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if not controller.running():
            raise RuntimeError(f"the controller exited:\n{controller.log_tail()}")
        if answers_ok(f"{url}/readyz", timeout_s=1.0):
            return
        time.sleep(0.3)
    raise RuntimeError(
        f"the controller was not ready within {READY_TIMEOUT:.0f}s:\n{controller.log_tail()}"
    )


def _print_exports(state: DevState) -> None:
    for name, value in state.exports.items():
        print(f"export {name}={shell_quoted(value)}")
    sys.stdout.flush()


def shell_quoted(value: str) -> str:
    safe = value and all(c.isalnum() or c in "-_./:@=+," for c in value)
    return value if safe else "'" + value.replace("'", "'\\''") + "'"


# -- down and status --------------------------------------------------------------------


def down(directory: Path = DEFAULT_DIR, say: Say = _say) -> int:
    """Stop what ``dev up`` started, the controller first; 0 also when nothing ran."""
    state = DevState.read(directory.resolve())
    if state is None:
        say(f"nothing to stop: no {directory}/state.json")
        return 0
    _stop_all(state, say)
    forget(directory.resolve())
    say(f"down; the logs stay in {directory}")
    return 0


def _stop_all(state: DevState, say: Say) -> None:
    last = len(STOP_ORDER)
    order = {
        name: STOP_ORDER.index(name) if name in STOP_ORDER else last for name in state.processes
    }
    for name in sorted(state.processes, key=order.__getitem__):
        process = state.processes[name]
        if stop(process, timeout=STOP_TIMEOUT.get(name, 10.0)):
            say(f"stopped {name} (pid {process.pid})")
        else:
            say(f"{name} (pid {process.pid}) was not running")


def status(directory: Path = DEFAULT_DIR) -> int:
    """Print each process and whether it runs; 0 when all run, 1 otherwise (or none is up)."""
    state = DevState.read(directory.resolve())
    if state is None:
        print(f"not up: no {directory}/state.json (`rollout-controller dev up` starts it)")
        return 1
    running = state.running()
    for name, process in state.processes.items():
        shown = "running" if running[name] else "GONE"
        print(f"{name:<11} {shown:<8} pid {process.pid:<8} {process.address}  (log {process.log})")
    print(f"console     {state.console}")
    return 0 if all(running.values()) else 1
