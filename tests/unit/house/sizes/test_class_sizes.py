"""No class in the daemon spans more than 200 lines.

A class that large has taken on more than one job: split it by
responsibility, as the engine was (the one writer of rollouts, the command
intake, the gate loop).
"""

from __future__ import annotations

import ast
from pathlib import Path

import controller.daemon

MAX_CLASS_LINES = 200
DAEMON = Path(controller.daemon.__file__).parent


def _class_sizes(source: str) -> dict[str, int]:
    """Each class of ``source`` (nested ones too) by name, with the lines it spans."""
    sizes = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
            sizes[node.name] = node.end_lineno - node.lineno + 1
    return sizes


def _daemon_classes() -> dict[str, int]:
    found = {}
    for path in sorted(DAEMON.rglob("*.py")):
        for name, lines in _class_sizes(path.read_text(encoding="utf-8")).items():
            found[f"{path.relative_to(DAEMON).as_posix()}:{name}"] = lines
    return found


def test_no_class_in_the_daemon_spans_more_than_200_lines() -> None:
    classes = _daemon_classes()
    assert len(classes) > 20  # the walk found the daemon
    over = {name: lines for name, lines in classes.items() if lines > MAX_CLASS_LINES}
    assert over == {}


def test_the_size_check_counts_a_class_from_its_first_line_to_its_last() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_CLASS_LINES))
    sizes = _class_sizes(f"class Big:\n{body}\n\n\nclass Small:\n    pass\n")
    assert sizes == {"Big": MAX_CLASS_LINES + 1, "Small": 2}
