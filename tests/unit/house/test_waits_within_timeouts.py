"""A test's own waits run out before pytest's limit on the test.

A wait on a signal (``scenario.until``, ``eventually``, ``asyncio.wait_for``...) that
times out fails with what it waited for, the decisions so far and the daemon's log.
pytest-timeout's limit (``timeout`` in pyproject.toml, or a test's or its module's
``pytest.mark.timeout``) fails with a stack dump. Where a test's longest wait is as long
as its limit, a slow machine gets the dump and never the message. So every test under
``tests/`` outside ``tests/unit`` whose wait helpers are given a literal ``timeout=`` in
seconds carries a limit longer than the longest of them.

Read from each module's syntax tree: the waits are the calls named in :data:`WAITS`
(``asyncio.wait_for`` only from ``asyncio``: a browser locator's ``wait_for`` counts in
milliseconds), anywhere in the test function's body.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[2]
ROOT = TESTS.parent
WAITS = frozenset(
    {
        "until",
        "eventually",
        "eventually_sync",
        "wait_for",
        "wait_for_log",
        "wait_status",
        "wait_unready",
    }
)


def default_limit() -> float:
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    return float(options["ini_options"]["timeout"])


def _timeout_mark(nodes: list[ast.expr]) -> float | None:
    for node in nodes:
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "timeout"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, int | float)
        ):
            return float(node.args[0].value)
    return None


def _module_limit(tree: ast.Module) -> float | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            value = node.value
            marks = list(value.elts) if isinstance(value, ast.List | ast.Tuple) else [value]
            return _timeout_mark(marks)
    return None


def _waiter(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        if func.attr == "wait_for":
            asyncio = isinstance(func.value, ast.Name) and func.value.id == "asyncio"
            return "wait_for" if asyncio else ""
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _longest_wait(test: ast.AST) -> float:
    waits = [
        float(keyword.value.value)
        for call in ast.walk(test)
        if isinstance(call, ast.Call) and _waiter(call.func) in WAITS
        for keyword in call.keywords
        if keyword.arg == "timeout"
        and isinstance(keyword.value, ast.Constant)
        and isinstance(keyword.value.value, int | float)
    ]
    return max(waits, default=0.0)


def outliving(source: str, default: float) -> list[str]:
    """The tests of ``source`` whose longest wait is not shorter than their limit."""
    tree = ast.parse(source)
    module = _module_limit(tree) or default
    found = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test_"
        ):
            limit = _timeout_mark(node.decorator_list) or module
            longest = _longest_wait(node)
            if longest >= limit:
                found.append(f"{node.name}: waits up to {longest:g} s under a {limit:g} s limit")
    return found


CASES = [
    ("async def test_a(s):\n    await s.until(c, timeout=60, what='x')\n", []),
    (
        "async def test_a(s):\n    await s.until(c, timeout=180, what='x')\n",
        ["test_a: waits up to 180 s under a 180 s limit"],
    ),
    (
        "@pytest.mark.timeout(300)\nasync def test_a(s):\n"
        "    await s.until(c, timeout=240, what='x')\n",
        [],
    ),
    (
        "pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]\n"
        "def test_a():\n    eventually_sync(c, timeout=150, what='x')\n",
        ["test_a: waits up to 150 s under a 120 s limit"],
    ),
    ("async def test_a(page):\n    await page.wait_for(timeout=90_000)\n", []),
    (
        "async def test_a():\n    await asyncio.wait_for(f, timeout=200)\n",
        ["test_a: waits up to 200 s under a 180 s limit"],
    ),
    (
        "async def test_a():\n    async def inner():\n"
        "        await eventually(c, timeout=181, what='x')\n",
        ["test_a: waits up to 181 s under a 180 s limit"],
    ),
    ("def helper():\n    eventually_sync(c, timeout=999, what='x')\n", []),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_a_wait_as_long_as_its_limit_is_found(source: str, expected: list[str]) -> None:
    assert outliving(source, 180.0) == expected


def test_every_test_waits_less_than_its_limit() -> None:
    default = default_limit()
    found = [
        f"{path.relative_to(ROOT)}::{line}"
        for path in sorted(TESTS.rglob("test_*.py"))
        if "unit" not in path.relative_to(TESTS).parts[:1]
        for line in outliving(path.read_text(), default)
    ]
    assert not found, "give these a pytest.mark.timeout above their longest wait:\n" + "\n".join(
        found
    )
