"""An export file as ``audit check`` reads it: a line at a time, never the whole file.

:class:`ExportFile` counts the file's lines in blocks, reads its last line from
the end, and reads its lines in order as often as the check asks
(:class:`~controller.core.trust.audit_check.ExportLines`). A line longer than
``max_line_bytes`` is never held: it is passed over in blocks and handed on as
:class:`~controller.core.trust.audit_check.Oversized`, so the memory a check
takes is its longest line's, up to the bound, whatever the file's size. Lines
end at ``\\n`` (a ``\\r`` before it is no part of the line, as ``str.splitlines``
reads them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from controller.core.common import ControllerError
from controller.core.trust import audit_check
from controller.ctl.arguments import MAX_LINE_BYTES

BLOCK_BYTES = 1024 * 1024


class ExportFile:
    """The lines of the export at ``path``; each a line's bytes, or audit_check.Oversized."""

    def __init__(self, path: Path, *, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.path, self._limit = path, max_line_bytes
        self.count = self._counted()
        self.last = self._last() if self.count else None

    def events(self, start: int = 0) -> Iterator[audit_check.Line]:
        """Each line before the last, from the ``start``-th (0-based)."""
        with self._open() as file:
            for index in range(self.count - 1):
                line = self._line(file)
                if index >= start:
                    yield line

    def _counted(self) -> int:
        """The lines the file holds: its newlines, and a last line without one."""
        count, last = 0, b"\n"
        with self._open() as file:
            while block := file.read(BLOCK_BYTES):
                count, last = count + block.count(b"\n"), block[-1:]
        return count if last == b"\n" else count + 1

    def _last(self) -> audit_check.Line:
        """The last line, read from the end back to the newline before it."""
        with self._open() as file:
            end = file.seek(0, 2)
            if end and _byte_at(file, end - 1) == b"\n":
                end -= 1
            start, tail = end, b""
            while start > 0 and b"\n" not in tail:
                if end - start > self._limit:
                    return audit_check.Oversized(end - start, self._limit)
                start = max(0, start - BLOCK_BYTES)
                file.seek(start)
                tail = file.read(end - start)
            line = tail[tail.rfind(b"\n") + 1 :]
        if len(line) > self._limit:
            return audit_check.Oversized(len(line), self._limit)
        return line.removesuffix(b"\r")

    def _line(self, file: BinaryIO) -> audit_check.Line:
        """The next line, without its newline; one over the bound is read past, not kept."""
        line = file.readline(self._limit + 1)
        if len(line) <= self._limit or line.endswith(b"\n"):
            return line.removesuffix(b"\n").removesuffix(b"\r")
        size = len(line)
        while (block := file.readline(BLOCK_BYTES)) and not block.endswith(b"\n"):
            size += len(block)
        return audit_check.Oversized(size + len(block.removesuffix(b"\n")), self._limit)

    def _open(self) -> BinaryIO:
        try:
            return self.path.open("rb")
        except OSError as error:
            raise ControllerError(f"cannot read {self.path}: {error.strerror or error}") from error


def _byte_at(file: BinaryIO, offset: int) -> bytes:
    file.seek(offset)
    return file.read(1)
