"""``rollout-controller demo``: services, controller, rollouts and apps, start to summary.

The order of a run:

1. start the broker, Redis and the model server side by side (or use those
   named by ``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``, ``LLM_BASE_URL``);
2. make an operator key and a controller config in a temporary directory;
3. run the controller as a child process (``python -m controller run``) and
   wait until it is ready;
4. follow its output topics, put the rings' segments (signed segment
   commands), start the simulated apps, send one signed ``start`` per flag;
5. show the rollouts until every flag has finished, or ``--duration``;
6. stop everything in reverse order, print the summary, and exit 0 only if
   the healthy flags completed and the faulty one was rolled back.

Every child process is stopped on the way out, whether the run ends,
fails, or is interrupted (Ctrl-C, SIGTERM, SIGHUP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console

from controller.core.common import ControllerError, dump_yaml
from controller.core.reading import SMALL_MODEL_NOTE, too_small
from controller.core.trust import signing
from controller.ctl.operate import write_private_key
from controller.demo import session
from controller.demo.options import DemoOptions
from controller.demo.scenario import (
    BASE_ERROR_RATE,
    ERROR_RATE_LIMIT,
    FAULT_FACTOR,
    FLAG_STATE_KEY_ID,
    KEY_ID,
    DemoFlag,
    Endpoints,
    controller_config,
    demo_flags,
    key_prefix,
    topic_names,
)
from controller.demo.screens import render_summary
from controller.demo.snapshot import FlagView, run_outcome
from controller.dev.embedded import (
    LLM_MODEL_ALIAS,
    ServiceStarter,
    ServiceUnavailable,
    kafka_service,
    llm_service,
    redis_service,
    start_services,
)
from controller.dev.processes import ManagedProcess, exit_on_signals, free_port

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
STOPPED = "every process the demo started was stopped"


@dataclass(frozen=True, slots=True)
class RunSetup:
    """Everything a run needs, decided before anything is started."""

    options: DemoOptions
    flags: tuple[DemoFlag, ...]
    run_id: str
    workdir: Path
    log_path: Path
    started: float
    """``time.monotonic()`` when the command started."""

    @property
    def deadline(self) -> float:
        return self.started + self.options.duration

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def run_demo(options: DemoOptions, *, console: Console | None = None) -> int:
    """Run the demo; the exit code (0: healthy flags completed, faulty one rolled back)."""
    console = console or Console()
    setup = RunSetup(
        options=options,
        flags=demo_flags(options.flags),
        run_id=secrets.token_hex(4),
        workdir=Path(tempfile.mkdtemp(prefix="rollout-demo-")),
        log_path=options.log or _new_log_path(),
        started=time.monotonic(),
    )
    # Library warnings (a client reconnecting, say) go to a file, not across the view.
    logging.basicConfig(filename=setup.workdir / "demo.log", level=logging.WARNING, force=True)
    try:
        views = _run(setup, console)
    except KeyboardInterrupt:
        _say(console, f"interrupted; {STOPPED} ({setup.workdir})")
        return EXIT_INTERRUPTED
    except SystemExit:  # SIGTERM or SIGHUP, see exit_on_signals
        _say(console, f"stopped by a signal; {STOPPED} ({setup.workdir})")
        raise
    except (ServiceUnavailable, ControllerError, RuntimeError, OSError, LookupError) as exc:
        _say(console, f"demo failed: {exc}")
        if isinstance(exc, ServiceUnavailable) and options.llm:
            _say(console, "the model is optional: `rollout-controller demo --no-llm` runs without")
        _say(console, f"logs kept in {setup.workdir}")
        return EXIT_FAILED
    return _conclude(setup, views, console)


def _run(setup: RunSetup, console: Console) -> tuple[FlagView, ...]:
    """Start everything, drive the rollouts, stop everything (in reverse, always)."""
    with exit_on_signals(), contextlib.ExitStack() as stack:
        _say(console, f"rollout-controller demo: {len(setup.flags)} flags, run {setup.run_id}")
        services = start_services(stack, setup.workdir, _starters(setup.options))
        for service in services.values():
            _say(console, f"  {service.name}: {service.description}")
        endpoints = Endpoints(
            kafka=services["kafka"].address,
            redis=services["redis"].address,
            llm=services["llm"].address if "llm" in services else None,
            http_port=free_port(),
        )
        key = _operator_key(setup.workdir)
        flag_keys = _flag_state_key(setup.workdir)
        config = _write_config(setup, endpoints, key, flag_keys)
        stack.callback(_forget_run, setup, endpoints)  # after the controller has stopped
        controller = _start_controller(setup, config)
        stack.callback(controller.stop)
        _say(console, f"  controller: pid {controller.pid}, config {config}")
        _say(console, f"  advisor: {_advisor_label(setup.options)}")
        _say(console, f"  console: http://127.0.0.1:{endpoints.http_port}/ui (while the demo runs)")
        _say(console, _try_this(setup, config))
        log: IO[bytes] = stack.enter_context(setup.log_path.open("wb"))
        drive = session.Session(
            flags=setup.flags,
            options=setup.options,
            endpoints=endpoints,
            topics=topic_names(setup.run_id),
            prefix=key_prefix(setup.run_id),
            key=key,
            flag_keys=flag_keys,
            controller=controller,
            log=log,
            console=console,
            started=setup.started,
            labels=session.Labels(advisor=_advisor_label(setup.options), fault=_fault(setup)),
        )
        return asyncio.run(drive.run())


def _conclude(setup: RunSetup, views: tuple[FlagView, ...], console: Console) -> int:
    ok, problems = run_outcome(views)
    console.print()
    console.print(render_summary(views))
    with setup.log_path.open("rb") as log:
        lines = sum(1 for _ in log)
    _say(console, f"decision log: {setup.log_path} ({lines} decisions and alerts)")
    _say(console, f"finished in {setup.elapsed():.1f} s")
    if ok:
        _say(console, "demo passed: the healthy flags completed, the faulty one was rolled back")
        shutil.rmtree(setup.workdir, ignore_errors=True)
        return EXIT_OK
    for problem in problems:
        _say(console, f"demo FAILED: {problem}")
    _say(console, f"logs kept in {setup.workdir}")
    return EXIT_FAILED


# -- set-up --------------------------------------------------------------------------


def _starters(options: DemoOptions) -> dict[str, ServiceStarter]:
    starters: dict[str, ServiceStarter] = {"kafka": kafka_service, "redis": redis_service}
    if options.llm:
        starters["llm"] = llm_service
    return starters


def _operator_key(workdir: Path) -> Ed25519PrivateKey:
    """A fresh operator key, written (0600) where ``rolloutctl --key`` can use it."""
    key, _public = signing.generate_key()
    write_private_key(workdir / "keys" / f"{KEY_ID}.key", key)
    return key


def _flag_state_key(workdir: Path) -> dict[str, str]:
    """A fresh key the controller signs flag states with; the apps' key id -> public key."""
    key, public = signing.generate_key()
    write_private_key(workdir / "keys" / f"{FLAG_STATE_KEY_ID}.key", key)
    return {FLAG_STATE_KEY_ID: public}


def _write_config(
    setup: RunSetup, endpoints: Endpoints, key: Ed25519PrivateKey, flag_keys: dict[str, str]
) -> Path:
    config = controller_config(
        setup.run_id,
        endpoints,
        public_key=signing.public_key_text(key.public_key()),
        advisor_mode="advisory" if setup.options.llm else "off",
        model=LLM_MODEL_ALIAS,
    )
    # The demo's apps verify flag states: the controller signs with this key.
    [key_id] = flag_keys
    signing_key = setup.workdir / "keys" / f"{key_id}.key"
    config["signing"] = {"key_file": str(signing_key), "key_id": key_id}
    path = setup.workdir / "controller.yaml"
    path.write_text(dump_yaml(config, sort_keys=False), encoding="utf-8")
    return path


def _start_controller(setup: RunSetup, config: Path) -> ManagedProcess:
    return ManagedProcess(
        [sys.executable, "-m", "controller", "run", "--config", str(config)],
        setup.workdir / "controller.log",
        stop_timeout=15.0,
    )


def _forget_run(setup: RunSetup, endpoints: Endpoints) -> None:
    """Delete the run's topics and keys from services the demo did not start itself."""
    with contextlib.suppress(Exception):  # best effort: the run is over either way
        asyncio.run(
            session.forget(
                endpoints,
                topics=topic_names(setup.run_id),
                prefix=key_prefix(setup.run_id),
                kafka_is_ours="kafka" not in _external(),
                redis_is_ours="redis" not in _external(),
            )
        )


def _external() -> set[str]:
    names = {"kafka": "KAFKA_BOOTSTRAP_SERVERS", "redis": "REDIS_URL"}
    return {name for name, variable in names.items() if os.environ.get(variable, "").strip()}


# -- words ---------------------------------------------------------------------------


def _say(console: Console, line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _advisor_label(options: DemoOptions) -> str:
    if not options.llm:
        return "off (--no-llm)"
    small = f": {SMALL_MODEL_NOTE}" if too_small(LLM_MODEL_ALIAS) else ""
    return f"advisory, {LLM_MODEL_ALIAS}{small}"


def _fault(setup: RunSetup) -> str:
    faulty = next((f.name for f in setup.flags if f.faulty), "-")
    worse = BASE_ERROR_RATE * FAULT_FACTOR
    return (
        f"{faulty}'s treatment fails {FAULT_FACTOR:g}x as often ({BASE_ERROR_RATE:.0%} -> "
        f"{worse:.0%}) from its first ring; the rings at 100% allow {ERROR_RATE_LIMIT:.0%}"
    )


def _try_this(setup: RunSetup, config: Path) -> str:
    """A steering command to paste: the run's config names its broker and topics."""
    key = setup.workdir / "keys" / f"{KEY_ID}.key"
    return (
        f"  operate it yourself: rolloutctl pause {setup.flags[-1].name} --config {config} "
        f"--key {key} --key-id {KEY_ID}"
    )


def _new_log_path() -> Path:
    handle, name = tempfile.mkstemp(prefix="rollout-demo-decisions-", suffix=".jsonl")
    os.close(handle)
    return Path(name)


__all__ = ["DemoOptions", "run_demo"]
