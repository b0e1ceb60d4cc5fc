"""A test-owned PostgreSQL server: Debian's binaries, a fresh cluster, a free port.

Unleash keeps its state in PostgreSQL, so its tests and benchmark need one.
:class:`PostgresServer` runs ``initdb`` into a working directory of its own
(trust authentication, superuser ``postgres``, no fsync: the data is thrown
away) and starts ``postgres`` on 127.0.0.1 and a free port, its socket in the
same directory. ``UNLEASH_POSTGRES_URL`` names an existing server instead.

PostgreSQL refuses to run as root. Run as root (a CI machine, a container),
the cluster is created and served as the ``postgres`` account that Debian's
package makes, or ``nobody`` where there is none; the working directory is
handed to that account.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from controller.dev.processes import (
    LOCALHOST,
    ManagedProcess,
    ServiceUnavailable,
    StartStop,
    free_port,
    read_tail,
    tcp_connectable,
)

_BINARIES = ("initdb", "postgres")
_DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_SERVICE_ACCOUNTS = ("postgres", "nobody")
START_TIMEOUT = 60.0


def postgres_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: PATH first, then Debian's newest."""
    on_path = [shutil.which(name) for name in _BINARIES]
    if all(on_path):
        return Path(str(on_path[0])).resolve().parent
    for folder in sorted(glob.glob(_DEBIAN_BIN_GLOB), key=_major, reverse=True):
        if all((Path(folder) / name).is_file() for name in _BINARIES):
            return Path(folder)
    return None


def _major(folder: str) -> int:
    version = Path(folder).parent.name
    return int(version) if version.isdigit() else 0


def _service_account() -> pwd.struct_passwd | None:
    """The account to run as when this process is root; None when it is not root."""
    if os.geteuid() != 0:
        return None
    for name in _SERVICE_ACCOUNTS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServiceUnavailable("no PostgreSQL: running as root and no `postgres` or `nobody` account")


class PostgresServer(StartStop):
    """One PostgreSQL cluster of its own on 127.0.0.1, trust authentication, user ``postgres``."""

    def __init__(self, *, startup_timeout: float = START_TIMEOUT) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise ServiceUnavailable(
                "no PostgreSQL: neither `initdb` and `postgres` on PATH nor "
                f"{_DEBIAN_BIN_GLOB}; install Debian's `postgresql` package "
                "(`make tools` does), or set UNLEASH_POSTGRES_URL to a server"
            )
        self.bin_dir = bin_dir
        self.account = _service_account()
        self.startup_timeout = startup_timeout
        self.port = free_port()
        # Not under a root-only temporary folder: the service account must reach it.
        self.workdir = Path(tempfile.mkdtemp(prefix="rc-postgres-"))
        self.workdir.chmod(0o755)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "postgres.log"
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """``postgres://`` URL of the server, without a database name."""
        return f"postgres://postgres@{LOCALHOST}:{self.port}"

    @property
    def description(self) -> str:
        return f"test-owned PostgreSQL ({self.bin_dir}) at {self.url}, data in {self.data_dir}"

    def _as_account(self, args: list[str]) -> list[str]:
        if self.account is None:
            return args
        return ["setpriv", f"--reuid={self.account.pw_uid}", f"--regid={self.account.pw_gid}",
                "--clear-groups", "--", *args]  # fmt: skip

    def _initdb(self) -> None:
        if self.account is not None:
            os.chown(self.workdir, self.account.pw_uid, self.account.pw_gid)
        args = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                "--auth=trust", "--encoding=UTF8", "--no-sync"]  # fmt: skip
        done = subprocess.run(  # noqa: S603 - our own argv
            self._as_account(args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self.startup_timeout,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceUnavailable(f"initdb failed:\n{done.stdout}{done.stderr}")

    def start(self) -> PostgresServer:
        """Create the cluster (first start only) and return once it accepts connections."""
        if not self.data_dir.exists():
            self._initdb()
        args = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-h", LOCALHOST,
                "-p", str(self.port), "-k", str(self.workdir), "-F",
                "-c", "max_connections=200", "-c", "full_page_writes=off"]  # fmt: skip
        self._process = ManagedProcess(self._as_account(args), self.log_path)
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._ready():
                return
            if self._process is not None and not self._process.running():
                raise ServiceUnavailable(f"postgres exited at start:\n{read_tail(self.log_path)}")
            time.sleep(0.1)
        self.stop()
        raise ServiceUnavailable(f"postgres not ready in {self.startup_timeout:.0f} s")

    def _ready(self) -> bool:
        # The port answers before recovery ends; the log line says it accepts queries.
        if not tcp_connectable(LOCALHOST, self.port):
            return False
        return "ready to accept connections" in read_tail(self.log_path, 200)

    def stop(self) -> None:
        """Stop the server and remove its cluster. Safe to call repeatedly."""
        if self._process is not None:
            self._process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
