"""Compile a validated audience rule into one Python function, with no call per condition.

The semantics are those of :mod:`controller.core.rules.matching` (three-valued, see
there); this module makes them cheap. A closure per node would cost one
Python call per condition, most of a rule's price; instead the whole rule
becomes one generated function ``check(get, member, matches, context)``, where
``get`` is the context's ``get`` and ``member`` and ``matches`` the segment
lookup's (``matches(name, context)`` answers a rule segment when ``member``
does not know the name), as
``dataclasses`` and ``namedtuple`` generate their methods.

The generated source holds **no text from the rule**: attribute names,
literals and segment names are passed in as constants named ``k0``, ``k1``, …,
and operators come from fixed tables keyed by the validated operator. It is
compiled with no builtins but the four it uses. The rule's bounds keep it
small: at most 64 conditions and 10 levels, so at most 10 nested loops
(Python allows 20 nested blocks).

For ``country == "TH" and age >= 18`` the source is::

    def check(get, member, matches, context):
        r1 = True
        while True:
            r2 = (v == k1) if isinstance(v := get(k0), str) else None
            if r2 is False:
                r1 = False
                break
            if r2 is None:
                r1 = None
            r3 = None if (v := number(get(k2))) is None else (v >= k3)
            ...
            break
        return r1
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.core.rules.audience import (
    AllOf,
    AnyOf,
    Condition,
    Instant,
    Node,
    NotRule,
    Segment,
    Semver,
)
from controller.core.rules.values import instant_ns, semver_key

Getter = Callable[[str], object]
Member = Callable[[str, str], "bool | None"]
Matches = Callable[[str, Any], "bool | None"]
Generated = Callable[[Getter, Member, Matches, Any], "bool | None"]
Reader = Callable[[object], object]

_COMPARE = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_TEXT_TESTS = {
    "starts_with": "v.startswith({L})",
    "ends_with": "v.endswith({L})",
    "contains": "({L} in v)",
}
_MEMBERSHIP = {"in": "in", "not in": "not in"}
_TEXT_VALUE = "isinstance(v := get({N}), str)"
_NUMBER_VALUE = "(v := number(get({N}))) is None"


class _Writer:
    def __init__(self, remembered: Callable[[Callable[[str], Any]], Reader]) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, object] = {}
        self.results = 0
        self.remembered = remembered

    def constant(self, value: object) -> str:
        name = f"k{len(self.constants)}"
        self.constants[name] = value
        return name

    def result(self) -> str:
        self.results += 1
        return f"r{self.results}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def node(self, node: Node, depth: int) -> str:
        """Emit the statements that compute ``node``'s truth; return the variable holding it."""
        if isinstance(node, AllOf | AnyOf):
            return self.chain(node, depth)
        if isinstance(node, NotRule):
            inner, out = self.node(node.negated, depth), self.result()
            self.emit(depth, f"{out} = None if {inner} is None else not {inner}")
            return out
        out = self.result()
        self.emit(depth, f"{out} = {self.condition(node)}")
        return out

    def chain(self, node: AllOf | AnyOf, depth: int) -> str:
        """``and`` stops at its first false part, ``or`` at its first true one."""
        parts, decisive = (node.all_of, False) if isinstance(node, AllOf) else (node.any_of, True)
        out = self.result()
        self.emit(depth, f"{out} = {not decisive}")
        self.emit(depth, "while True:")
        for part in parts:
            truth = self.node(part, depth + 1)
            self.emit(depth + 1, f"if {truth} is {decisive}:")
            self.emit(depth + 2, f"{out} = {decisive}")
            self.emit(depth + 2, "break")
            self.emit(depth + 1, f"if {truth} is None:")
            self.emit(depth + 2, f"{out} = None")
        self.emit(depth + 1, "break")
        return out

    def condition(self, node: Condition) -> str:
        """One expression: the condition's truth, ``None`` when its value is missing or mistyped."""
        name, op, value = self.constant(node.attribute), node.op, node.value
        text_value, number_value = _TEXT_VALUE.format(N=name), _NUMBER_VALUE.format(N=name)
        if isinstance(value, Segment | list):
            return self.membership(name, op, value)
        if op in _TEXT_TESTS:
            return f"{_TEXT_TESTS[op].format(L=self.constant(value))} if {text_value} else None"
        compare = f"(v {_COMPARE[op]} {{L}})"
        if isinstance(value, Semver | Instant):
            return self.parsed(name, compare, value)
        if isinstance(value, bool):
            literal = self.constant(value)
            return f"{compare.format(L=literal)} if type(v := get({name})) is bool else None"
        if isinstance(value, int | float):
            return f"None if {number_value} else {compare.format(L=self.constant(float(value)))}"
        return f"{compare.format(L=self.constant(value))} if {text_value} else None"

    def membership(self, name: str, op: str, value: Segment | list[str] | list[float]) -> str:
        text_value, number_value = _TEXT_VALUE.format(N=name), _NUMBER_VALUE.format(N=name)
        if isinstance(value, Segment):
            found = "m" if op == "in" else "not m"
            seg = self.constant(value.segment)
            lookup = f"(m := member({seg}, v)) is None and (m := matches({seg}, context)) is None"
            return f"None if not {text_value} or {lookup} else {found}"
        test = f"(v {_MEMBERSHIP[op]} {{L}})"
        if isinstance(value[0], str):
            return f"{test.format(L=self.constant(frozenset(value)))} if {text_value} else None"
        literal = self.constant(frozenset(float(v) for v in value))
        return f"None if {number_value} else {test.format(L=literal)}"

    def parsed(self, name: str, compare: str, value: Semver | Instant) -> str:
        parse: Callable[[str], Any] = semver_key if isinstance(value, Semver) else instant_ns
        literal = self.constant(parse(value.semver if isinstance(value, Semver) else value.date))
        read = self.constant(self.remembered(parse))
        return f"None if (v := {read}(get({name}))) is None else {compare.format(L=literal)}"


def generate(
    node: Node,
    *,
    number: Callable[[object], float | None],
    remembered: Callable[[Callable[[str], Any]], Reader],
) -> tuple[str, Generated]:
    """The source of ``check(get, member, matches, context)`` for ``node``, and the function.

    ``number`` reads a context value as a number (``None`` if it is none);
    ``remembered(parse)`` makes a reader that parses strings, remembering them.
    """
    writer = _Writer(remembered)
    root = writer.node(node, 1)
    head = "def check(get, member, matches, context):"
    source = "\n".join([head, *writer.lines, f"    return {root}", ""])
    builtins = {"isinstance": isinstance, "type": type, "str": str, "bool": bool}
    namespace: dict[str, Any] = {"__builtins__": builtins, "number": number, **writer.constants}
    # Safe to execute: the source is fixed templates and generated names only.
    exec(compile(source, "<audience rule>", "exec"), namespace)  # noqa: S102
    check: Generated = namespace["check"]
    return source, check
