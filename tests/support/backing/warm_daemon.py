"""Daemons forked from an interpreter that has already imported them.

A daemon's start costs about 1.4 CPU seconds of imports, and the suite starts some 260 of
them, most while other tests wait for the same two cores. Each pytest worker therefore
keeps one forkserver (:mod:`multiprocessing`'s, the standard library's) that imports the
daemon's modules once; a run is a fork of it that takes the test's environment, working
directory and log, starts a session of its own (so that its process group can be signalled
as a whole, as :class:`~controller.dev.processes.ManagedProcess` does) and calls
``rollout-controller run`` exactly as the command line would. It is a process of its own:
killed, stopped and restarted as any other, with its own exit code.

What a fork cannot take from the test is what the daemon's modules read as they are
imported: :data:`IMPORT_TIME` names those variables, and a test that sets one differently
from the forkserver starts its daemon cold (:func:`can_fork`). The command line's own
start, ``python -m controller``, is run by the tests of the command line, the dev stack and
the demo.

This module imports only the standard library until a run starts, since the forkserver
imports it by name in each child.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import multiprocessing.util  # its exit hook first, so that ours runs before it
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path

IMPORT_TIME = ("ROLLOUT_NATIVE_FOLD",)
"""Variables a daemon's modules read when they are imported (the native fold's switch)."""

PRELOAD = [
    __name__,
    "controller.cli",
    "controller.daemon.running.wiring",
    "controller.dev.clock",
    "controller.process",
    "controller.settings",
]
"""What the forkserver imports once: everything ``rollout-controller run`` imports to start."""

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)

_SESSION_TIMEOUT = 30.0
"""How long a new run may take to lead its own session before the test gives up on it."""

_live: set[WarmRun] = set()

_started_with: dict[str, str | None] = {}
"""The :data:`IMPORT_TIME` variables the forkserver was started with (empty until then)."""


def _import_time(env: Mapping[str, str]) -> dict[str, str | None]:
    return {name: env.get(name) for name in IMPORT_TIME}


def can_fork(env: Mapping[str, str]) -> bool:
    """Whether a run with ``env`` behaves as a cold start would: it sets every variable in
    :data:`IMPORT_TIME` as the forkserver was started with it (as this interpreter does,
    before the forkserver starts)."""
    return _import_time(env) == (_started_with or _import_time(os.environ))


def _run_daemon(
    args: list[str], env: dict[str, str], log_path: str, cwd: str, told: Connection
) -> None:
    """The child: become the command line's process, then run it (exits with its code)."""
    os.setsid()
    told.send(True)
    told.close()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    for target, source in ((0, null), (1, log), (2, log)):
        os.dup2(source, target)
    os.close(log)
    os.close(null)
    sys.argv = ["rollout-controller", *args]
    from controller.cli import main  # noqa: PLC0415 - imported once, by the forkserver

    code = main(args)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


class WarmRun:
    """One daemon run forked from the worker's forkserver; the interface of
    :class:`~controller.dev.processes.ManagedProcess` that the daemon's tests use."""

    def __init__(self, args: Sequence[str], log_path: Path, *, env: Mapping[str, str]) -> None:
        self.args = [str(a) for a in args]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"$ rollout-controller {' '.join(self.args)} (forked)\n".encode())
        ready, told = _CONTEXT.Pipe(duplex=False)
        self._process = _CONTEXT.Process(
            target=_run_daemon,
            args=(self.args, dict(env), str(log_path), os.getcwd(), told),
            name="rollout-controller",
            daemon=True,
        )
        if not _started_with:  # the first run starts the forkserver, from this environment
            _started_with.update(_import_time(os.environ))
        self._process.start()
        told.close()
        _live.add(self)
        # Until the child has called setsid its group is the forkserver's: a signal to the
        # group would miss it, so the run is handed over once it says it leads its own
        # (or has already ended, which closes the pipe unsaid).
        with ready:
            if not ready.poll(_SESSION_TIMEOUT):
                self.kill()
                raise RuntimeError(f"forked daemon {self.pid} did not start its own session")

    @property
    def pid(self) -> int:
        pid = self._process.pid
        assert pid is not None
        return pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def running(self) -> bool:
        return self._process.exitcode is None

    def _signal_group(self, sig: signal.Signals) -> None:
        # Only while the run has not been seen to exit (the forkserver reaps it at once).
        if self.running():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to the run's group, wait up to ``timeout``, then SIGKILL."""
        self._signal_group(signal.SIGCONT)  # a paused run could not act on SIGTERM
        self._signal_group(signal.SIGTERM)
        self._process.join(timeout)
        self.kill()

    def kill(self) -> None:
        """SIGKILL to the run's group, and wait for it to be gone."""
        self._signal_group(signal.SIGKILL)
        if self.running():  # not yet leading its own group: the run itself
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        self._process.join()
        _live.discard(self)


@atexit.register
def _kill_leftovers() -> None:
    # Before multiprocessing's own exit hook, which would SIGTERM and wait out each
    # leftover's graceful shutdown.
    for run in list(_live):
        with contextlib.suppress(Exception):
            run.kill()
