"""Nothing but CHANGELOG.md cites the project's own issue numbers.

A reader of the code, the docs or the tests cannot resolve ``(#40)`` or
``since #39``: what changed is said in words, and history is kept in
CHANGELOG.md and the commit log. Another project's issue keeps its name
(``pytest-xdist#1386``) and stays, as do hex colours, HTML character
references and markdown headings.

Every file git lists (tracked, or new and not ignored) is read, except
CHANGELOG.md and this file, whose table holds examples of what is refused.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
HERE = Path(__file__).resolve().relative_to(ROOT).as_posix()

# ``#`` and digits standing alone: not after a word, a path, a project's name
# (``-``), ``&`` (``&#39;``) or a CSS or attribute value (``color: #333``).
ISSUE = re.compile(r"(?<![\w/&:=\"'-])(?<!: )(?<!=\")(?<!=')#\d{1,5}(?![\w-])")


def _cites(line: str) -> bool:
    return ISSUE.search(line) is not None


def _read(path: str) -> bool:
    """Whether ``path`` is read: CHANGELOG.md keeps its history, this file its examples."""
    return path not in {"CHANGELOG.md", HERE}


def _listed() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    return [p for p in listing.stdout.decode().split("\0") if p and _read(p)]


def _citations(root: Path, path: str) -> list[str]:
    file = root / path
    if file.is_symlink() or not file.is_file():
        return []
    data = file.read_bytes()
    if b"\0" in data:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return [f"{path}:{n}: {line.strip()}" for n, line in enumerate(lines, 1) if _cites(line)]


def _citing() -> dict[str, list[str]]:
    found = {path: _citations(ROOT, path) for path in _listed()}
    return {path: lines for path, lines in found.items() if lines}


@pytest.mark.parametrize(
    ("line", "cites"),
    [
        ("A drain gives up when the engine stops (#37).", True),
        ("until #40's last change it read", True),
        ("one pipeline of script calls since #39", True),
        ("The pure model of #42: environments", True),
        ("#28: release windows", True),
        ("(#14, #23)", True),
        ("see issue #1234", True),
        ("pytest-xdist#1386 is fixed", False),
        ("aiokafka#123", False),
        ("https://github.com/o/r/issues/12#issuecomment-3", False),
        ("docs/rollouts.md#40", False),
        ("color:#ff00aa; fill: #0969da", False),
        ("color:#333", False),
        ("color: #000;", False),
        ('<rect fill="#123"/>', False),
        ("it&#39;s", False),
        ("## Heading", False),
        ("# 40 retries at most", False),
        ("x = y  # noqa", False),
    ],
)
def test_what_reads_as_an_issue_number(line: str, cites: bool) -> None:
    assert _cites(line) is cites


@pytest.mark.parametrize(
    ("path", "read"),
    [
        ("CHANGELOG.md", False),
        (HERE, False),
        ("docs/rollouts.md", True),
        ("docs/CHANGELOG.md", True),
        ("controller/core/machine/gate.py", True),
        ("tests/unit/test_cli.py", True),
    ],
)
def test_which_files_are_read(path: str, read: bool) -> None:
    assert _read(path) is read


def test_git_lists_the_files_to_read() -> None:
    listed = _listed()
    assert "controller/__init__.py" in listed
    assert "docs/index.md" in listed


def test_a_citation_is_found_with_its_place(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\nKept since #39.\ncolor: #000;\n")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\0 (#40)")
    assert _citations(tmp_path, "a.md") == ["a.md:3: Kept since #39."]
    assert _citations(tmp_path, "b.png") == []
    assert _citations(tmp_path, "missing.md") == []


def test_nothing_cites_an_issue_number() -> None:
    lines = [line for found in _citing().values() for line in found]
    assert lines == [], "say what changed in words; history is in CHANGELOG.md"
