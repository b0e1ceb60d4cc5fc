"""Open objects only go down: evidence is read by its fields, JSON is typed.

A decision's evidence is a typed model (``controller/core/wire/evidence.py``):
a reader that takes it apart by key (``evidence["arms"]``, ``evidence.get``)
reads what the type already says, and guesses at what it does not. Lines
typed ``dict[str, Any]`` are the same guess, one level up. Both are counted;
the ceilings are today's figures and only go down: lower one when a change
removes some, never raise it.
"""

from __future__ import annotations

import re
from pathlib import Path

import controller

PACKAGE = Path(controller.__file__).parent

MAX_OPEN_DICT_LINES = 111
"""Lines of the package holding ``dict[str, Any]``."""
MAX_OPEN_DICT_LINES_ON_DECISION_PATH = 0
"""Of those, lines in the wings that make and read decisions."""
MAX_KEYED_EVIDENCE_READS = 0
"""Reads of an evidence by key: ``evidence["…"]``, ``evidence.get(``, ``gate_data[…]``."""

DECISION_PATH = ("core/machine", "core/release", "core/reading", "core/rollouts")
OPEN_DICT = re.compile(r"dict\[str, Any\]")
KEYED_READ = re.compile(r"""evidence\[["']|evidence\.get\(|gate_data\[|gate_data\.get\(""")


def _lines(pattern: re.Pattern[str], under: tuple[str, ...] = ("",)) -> list[str]:
    """``path:line`` of each line of the package's modules under ``under`` matching."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if not name.startswith(under):
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        found += [f"{name}:{n}" for n, line in enumerate(lines, 1) if pattern.search(line)]
    return found


def test_the_walk_finds_what_it_counts() -> None:
    # A pattern that finds nothing would pass every ceiling.
    assert _lines(re.compile(r"from __future__ import annotations"))
    assert OPEN_DICT.search("x: dict[str, Any] = {}")
    assert KEYED_READ.search('evidence["arms"]')
    assert KEYED_READ.search("evidence.get(")


def test_lines_typed_as_open_dicts_do_not_grow() -> None:
    assert len(_lines(OPEN_DICT)) <= MAX_OPEN_DICT_LINES


def test_open_dicts_on_the_decision_path_do_not_grow() -> None:
    assert len(_lines(OPEN_DICT, DECISION_PATH)) <= MAX_OPEN_DICT_LINES_ON_DECISION_PATH


def test_evidence_read_by_key_does_not_grow() -> None:
    assert len(_lines(KEYED_READ)) <= MAX_KEYED_EVIDENCE_READS
