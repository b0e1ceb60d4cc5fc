"""The state ``dev up`` leaves: read back as written, and no stranger's pid is ever signalled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.demo.devstack import shell_quoted
from controller.demo.devstate import DevState, Process, alive, stop
from tests.support.waiting import eventually_sync


def test_the_state_reads_back_as_written(tmp_path: Path) -> None:
    state = DevState(
        processes={"redis": Process(123, "redis-server", "redis://127.0.0.1:1/0", "r.log")},
        exports={"REDIS_URL": "redis://127.0.0.1:1/0"},
        console="http://127.0.0.1:8000/ui?token=t",
    )
    state.write(tmp_path)
    assert DevState.read(tmp_path) == state


@pytest.mark.parametrize("text", ["", "{", "[]", '{"processes": {"x": {"pid": 1}}}'])
def test_a_damaged_state_file_reads_as_none(tmp_path: Path, text: str) -> None:
    (tmp_path / "state.json").write_text(text, encoding="utf-8")
    assert DevState.read(tmp_path) is None


def test_a_pid_is_ours_only_while_its_command_line_holds_the_marker() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        ours = Process(child.pid, "time.sleep(60)", "", "")
        # until the child has exec'd its own command line
        eventually_sync(lambda: alive(ours), timeout=30, what="the child's command line")
        stranger = Process(child.pid, "redis-server", "", "")
        assert not alive(stranger)
        assert stop(stranger, timeout=1) is False  # not signalled: still running
        assert child.poll() is None
        assert stop(Process(child.pid, "time.sleep(60)", "", ""), timeout=10) is True
        assert child.wait(timeout=10) != 0
    finally:
        child.kill()
        child.wait()
    assert not alive(Process(os.getpid() + 10_000_000, "x", "", ""))


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("127.0.0.1:9092", "127.0.0.1:9092"),
        ("/tmp/my keys/dev.key", "'/tmp/my keys/dev.key'"),
        ("it's", "'it'\\''s'"),
        ("", "''"),
    ],
)
def test_exports_are_quoted_for_the_shell(value: str, shown: str) -> None:
    assert shell_quoted(value) == shown
