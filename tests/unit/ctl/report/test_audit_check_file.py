"""``audit check`` reads a file a line at a time: the lines it reads are the file's, and its
memory is a line's, not the file's."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from controller.core.trust.audit_chain import SealData, seal, seal_line, start_digest
from controller.core.trust.audit_check import Oversized
from controller.ctl.report.audit_lines import ExportFile

SINCE, UNTIL = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
MIB = 1024 * 1024
MEMORY_BOUND = 64 * MIB
"""What checking a large file may take beyond checking a small one."""


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"\n",
        b"one",
        b"one\n",
        b"one\ntwo",
        b"one\ntwo\n",
        b"one\r\ntwo\r\n",
        b"one\n\nthree\n",
        b"one\ntwo\n\n",
    ],
)
def test_the_lines_read_are_the_files(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "export.jsonl"
    path.write_bytes(text)
    read = ExportFile(path, max_line_bytes=16)
    lines = text.splitlines()
    assert (read.count, read.last) == (len(lines), lines[-1] if lines else None)
    assert list(read.events()) == lines[:-1]
    assert list(read.events(1)) == lines[1:-1]


def test_a_line_over_the_bound_is_named_by_its_size_not_read(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"short\n" + b"x" * 40 + b"\nshort\n" + b"y" * 33)
    read = ExportFile(path, max_line_bytes=16)
    assert read.count == 4
    assert list(read.events()) == [b"short", Oversized(40, 16), b"short"]
    assert read.last == Oversized(33, 16)


def _event(n: int, head: str, pad: int) -> bytes:
    data = {"n": n, "pad": "p" * pad}
    return orjson.dumps({"specversion": "1.0", "id": f"e-{n}", "data": data, "prevdigest": head})


def _write_export(path: Path, *, events: int, pad: int, huge_at: int | None = None) -> None:
    """A chained, sealed export of ``events`` lines of about ``pad`` bytes; at ``huge_at``, a
    line of 200 MiB instead."""
    start = start_digest(SINCE, UNTIL, ["decision"])
    head = start
    with path.open("wb") as out:
        for n in range(events):
            line = _event(n, head, 200 * MIB if n == huge_at else pad)
            out.write(line + b"\n")
            head = hashlib.sha256(line).hexdigest()
        opened = SealData(
            since=SINCE, until=UNTIL, types=["decision"], events=0, start=start, head=start
        )
        sealed = seal(opened, events=events, head=head, at=UNTIL, signer=None)
        out.write(seal_line(sealed).encode() + b"\n")


MEASURED = """
import resource, sys
from controller.ctl.app import main
code = main(["audit", "check", sys.argv[1]])
print("maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "exit", code)
"""


def _checked(path: Path) -> tuple[int, int, str]:
    """``audit check`` of ``path`` in a process of its own: its peak memory, exit, output."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, str(path)],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    said, _, measured = done.stdout.rstrip().rpartition("\n")
    _, peak, _, code = measured.split()
    return int(peak), int(code), said


@pytest.mark.slow
def test_a_gigabyte_export_is_checked_in_the_memory_of_a_line(tmp_path: Path) -> None:
    # Given a small export, and one of a gigabyte in lines of 64 KiB
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    _write_export(small, events=3, pad=100)
    _write_export(large, events=16 * 1024, pad=64 * 1024)
    assert large.stat().st_size > 1024 * MIB
    # When each is checked
    base, code, said = _checked(small)
    assert (code, said) == (0, f"{small}: 3 events, chained and counted; the seal is unsigned")
    peak, code, said = _checked(large)
    # Then the large one holds, in the memory of the small one and a bounded more
    assert (code, said) == (
        0,
        f"{large}: 16,384 events, chained and counted; the seal is unsigned",
    )
    assert peak - base < MEMORY_BOUND, (peak, base)


@pytest.mark.slow
def test_a_line_of_200_mib_fails_where_it_is_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    _write_export(path, events=6, pad=100, huge_at=3)
    small = tmp_path / "small.jsonl"
    _write_export(small, events=3, pad=100)
    base, _, _ = _checked(small)
    peak, code, said = _checked(path)
    assert code == 1
    assert said.startswith(f"{path}: line 4: 209,715,")
    assert "longer than the 4,194,304 bytes the check reads a line to" in said
    assert peak - base < MEMORY_BOUND, (peak, base)
