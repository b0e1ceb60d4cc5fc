"""No function of the package is longer than 60 lines, and most are short.

A function is measured from its ``def`` line to the last line of its body
(decorators left out, its docstring and the functions nested in it counted), as
``ast`` gives them. One that would pass the cap is cut into named steps, with
small dataclasses for the values the steps hand on (the daemon's start in
``controller/daemon/running/wiring.py`` reads as such a sequence), never trimmed of the
comments that say why.
"""

from __future__ import annotations

import ast
import statistics
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import controller

MAX_FUNCTION_LINES = 60
MAX_MEDIAN_LINES = 10
PACKAGE = Path(controller.__file__).parent


@dataclass(frozen=True, slots=True)
class Function:
    where: str
    """``controller/...py:LINE name``, where the ``def`` is."""
    lines: int


def functions(source: str, module: str) -> list[Function]:
    """Every function and method in ``source``, nested ones included, with its length."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            found.append(Function(f"{module}:{node.lineno} {node.name}", lines))
    return found


@cache
def _package_functions() -> tuple[Function, ...]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = f"controller/{path.relative_to(PACKAGE).as_posix()}"
        found += functions(path.read_text(encoding="utf-8"), module)
    return tuple(found)


def test_no_function_of_the_package_is_longer_than_60_lines() -> None:
    found = _package_functions()
    assert len(found) > 1000  # the walk found the package's functions
    over = sorted(f"{f.where} ({f.lines} lines)" for f in found if f.lines > MAX_FUNCTION_LINES)
    assert over == [], "cut into named steps:\n" + "\n".join(over)


def test_the_median_function_is_at_most_10_lines() -> None:
    median = statistics.median(f.lines for f in _package_functions())
    assert median <= MAX_MEDIAN_LINES


def test_a_function_is_measured_from_its_def_to_its_last_line() -> None:
    source = '''
@decorator
def outer(a: int) -> int:
    """Doc."""

    def inner() -> int:
        return a

    return inner()


class Thing:
    async def method(self) -> None:
        pass
'''
    assert set(functions(source, "m.py")) == {
        Function("m.py:3 outer", 7),  # its decorator left out, the function in it counted
        Function("m.py:6 inner", 2),
        Function("m.py:13 method", 2),
    }
