"""No test asserts an elapsed wall-clock time.

A wall-clock interval measured on a shared two-core machine says more about
the machine than about the code: such a test waits on a signal instead
(:func:`tests.support.waiting.eventually`), or drives a clock it owns where timing is
the subject (``clock=`` on the advisor and on ``measure()``).

The rule, checked on the syntax tree of every module under ``tests/``
(benchmarks under ``bench/`` are not tests, and are not read). A *clock read*
is a call of ``monotonic``, ``time``, ``perf_counter`` (or their ``_ns``
forms) as an attribute (``time.monotonic()``, ``loop.time()``) or a bare
``monotonic()``/``perf_counter()``. Within a function, a *reading* is a local
name assigned from an expression with a clock read in it (``started =
time.monotonic()``), and an *interval* a local name assigned from a
subtraction that has a clock read or a reading on either side, or from an
expression using an interval (``elapsed = time.monotonic() - started``,
``took = elapsed * 1000``; ``:=`` counts as an assignment). An ``assert``
breaks the rule when it

1. subtracts with a clock read or a reading on either side
   (``assert time.monotonic() - started < 5``), or
2. uses an interval (``assert 0.8 <= elapsed < 1.3``).

A clock read for a wait's deadline, for a printed figure, or for a timestamp
in a message (``int(time.time() * 1000)``) is not an elapsed time asserted.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]
CLOCKS = {
    "monotonic",
    "monotonic_ns",
    "time",
    "time_ns",
    "perf_counter",
    "perf_counter_ns",
}
CLOCK_WORD = re.compile(r"\b(?:monotonic|time|perf_counter)(?:_ns)?\b")
"""The name of a clock in :data:`CLOCKS` as a word of a module's text (its identifiers
NFKC-normalised, as Python reads them): a module without one reads no clock."""


def _clock_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr in CLOCKS
    return isinstance(func, ast.Name) and func.id in CLOCKS - {"time"}


def _uses(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def _reads(node: ast.AST, readings: set[str]) -> bool:
    """Whether ``node`` has a clock read or a reading in it."""
    return any(_clock_call(n) for n in ast.walk(node)) or _uses(node, readings)


def _interval(node: ast.AST, readings: set[str], intervals: set[str]) -> bool:
    """Whether ``node`` subtracts clock reads or readings, or uses an interval."""
    for sub in ast.walk(node):
        subtracts = isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Sub)
        if subtracts and (_reads(sub.left, readings) or _reads(sub.right, readings)):  # type: ignore[attr-defined]
            return True
    return _uses(node, intervals)


def _assignments(function: ast.AST) -> Iterator[tuple[set[str], ast.AST]]:
    for node in ast.walk(function):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign) and node.value:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            yield names, node.value
        elif isinstance(node, ast.NamedExpr):
            yield {node.target.id}, node.value


def _names(function: ast.AST) -> tuple[set[str], set[str]]:
    """The readings and the intervals ``function`` assigns, to a fixed point."""
    readings: set[str] = set()
    intervals: set[str] = set()
    while True:
        before = len(readings) + len(intervals)
        for names, value in _assignments(function):
            if _interval(value, readings, intervals):
                intervals |= names
            elif _reads(value, readings):
                readings |= names
        if len(readings) + len(intervals) == before:
            return readings, intervals


def offenders(source: str, name: str) -> Iterator[str]:
    """``name:line`` of every assert in ``source`` that breaks the rule."""
    text = source if source.isascii() else unicodedata.normalize("NFKC", source)
    if not CLOCK_WORD.search(text):
        return  # no clock read can be written without its name: nothing to parse
    tree = ast.parse(source)
    nodes = list(ast.walk(tree))
    if not any(_clock_call(n) for n in nodes):
        return
    functions = [n for n in nodes if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    flagged: set[int] = set()
    for scope in [*functions, tree]:
        if scope is not tree and not any(_clock_call(n) for n in ast.walk(scope)):
            continue  # no clock read: no reading, no interval, so no assert breaks the rule
        readings, intervals = _names(scope) if scope is not tree else (set(), set())
        for node in ast.walk(scope):
            if isinstance(node, ast.Assert) and _interval(node, readings, intervals):
                flagged.add(node.lineno)
    yield from (f"{name}:{line}" for line in sorted(flagged))


def test_no_test_asserts_an_elapsed_wall_clock_time() -> None:
    found = [
        where
        for path in sorted(TESTS.rglob("*.py"))
        for where in offenders(path.read_text(), str(path.relative_to(TESTS.parent)))
    ]
    assert found == [], "asserts on a wall clock; wait on a signal or inject a clock"


BAD = [
    "def t():\n    started = time.monotonic()\n    run()\n"
    "    elapsed = time.monotonic() - started\n    assert 0.8 <= elapsed < 1.3\n",
    "def t():\n    began = time.perf_counter_ns()\n    run()\n"
    "    assert time.perf_counter_ns() - began < 5\n",
    "async def t():\n    loop = asyncio.get_running_loop()\n    t0 = loop.time()\n    await run()\n"
    "    took = (loop.time() - t0) * 1000\n    assert took < 50\n",
    "def t():\n    if (d := monotonic() - s) > 1:\n        pass\n    assert d < 2\n",
]
GOOD = [
    "def t():\n    deadline = time.monotonic() + 30\n    run(deadline)\n    assert done()\n",
    "def t():\n    started = time.monotonic()\n    run()\n    print(time.monotonic() - started)\n",
    "def t():\n    event = {'ts': int(time.time() * 1000)}\n    assert send(event)\n",
    "def t():\n    assert request['latency_ms'] == 20.5\n",
    "def t():\n    now = time.monotonic()\n    assert stalled(now + 60) is not None\n",
]


def test_the_rule_catches_what_it_says_and_only_that() -> None:
    assert [len(list(offenders(code, "bad"))) for code in BAD] == [1] * len(BAD)
    assert [list(offenders(code, "good")) for code in GOOD] == [[] for _ in GOOD]
