"""``make test`` builds the native extensions (OTLP reader, events fold) where cargo is, as it
builds Kafka and the Collector, and the build is a no-op once its stamp is newer than the
sources.

Both are read from make itself (``make -n``, ``make -q``) over a virtualenv of stamps in
a temporary folder, so nothing is built and the project's own virtualenv is not touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MATURIN = "maturin build --release --locked"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _make(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(
        ["make", "--no-print-directory", f"VENV={venv}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _stamped(venv: Path, *names: str) -> Path:
    """``venv`` with each of ``names`` made, in that order, newer than every source."""
    later = time.time() + 3600
    for step, name in enumerate(names):
        path = venv / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        os.utime(path, (later + step, later + step))
    return venv


def test_make_test_builds_the_native_reader_before_the_tests_run(tmp_path: Path) -> None:
    venv = _stamped(tmp_path / "venv", "bin/python", ".installed")

    planned = _make(venv, "-n", "test")

    assert planned.returncode == 0, planned.stderr
    lines = planned.stdout.splitlines()
    built = [i for i, line in enumerate(lines) if MATURIN in line]
    tests = [i for i, line in enumerate(lines) if "-m pytest" in line]
    assert built, planned.stdout
    assert tests, planned.stdout
    assert built[0] < tests[-1]
    for crate in ("native/otlp/Cargo.toml", "native/fold/Cargo.toml"):  # both extensions
        assert crate in planned.stdout


def test_a_built_native_reader_is_not_built_again(tmp_path: Path) -> None:
    fresh = _stamped(tmp_path / "fresh", "bin/python", ".installed")
    built = _stamped(tmp_path / "built", "bin/python", ".installed", ".native")

    # make -q: exit 0 when the target is up to date, 1 when it would be made
    assert _make(fresh, "-q", "native").returncode == 1
    assert _make(built, "-q", "native").returncode == 0
    assert MATURIN not in _make(built, "-n", "test").stdout
