"""A clock that a test of the whole daemon turns from outside: the wall clock plus an
offset read from a file (``rollout-controller run --clock-file``).

Where timing is the subject — release windows, schedules, time boxes — a test
of the real daemon cannot wait for Monday. The daemon already takes its
clock as an argument; this is the one a test hands it: the file holds an
offset in seconds (``259200.5``), written whole (to a temporary file, then
renamed), and the clock reads it again whenever the file changes. The clock
runs on from there at the wall clock's pace, so the daemon's timers still
fire. Not for production: the option is hidden from ``--help``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

MAX_OFFSET_SECONDS = 100 * 366 * 86400.0
"""Offsets past a hundred years either way are ignored (the previous one stays)."""


class FileClock:
    """``datetime.now(UTC)`` plus the offset in ``path`` (zero until the file says more)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._seen: tuple[int, int] | None = None
        self._offset = timedelta(0)

    def __call__(self) -> datetime:
        self._refresh()
        return datetime.now(UTC) + self._offset

    def _refresh(self) -> None:
        try:
            found = self._path.stat()
            if (found.st_ino, found.st_mtime_ns) == self._seen:
                return
            text = self._path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            return  # no file (yet), or one being replaced: the offset stays
        self._seen = (found.st_ino, found.st_mtime_ns)
        try:
            seconds = float(text.strip())
        except ValueError:
            return
        if math.isfinite(seconds) and abs(seconds) <= MAX_OFFSET_SECONDS:
            self._offset = timedelta(seconds=seconds)


def set_offset(path: Path, offset: timedelta) -> None:
    """Turn every :class:`FileClock` reading ``path`` by writing ``offset`` whole."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(f"{offset.total_seconds()!r}\n", encoding="ascii")
    temporary.replace(path)
