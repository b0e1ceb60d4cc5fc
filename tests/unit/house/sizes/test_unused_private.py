"""No private function of the controller is left unused.

A private function or method (``_name``; not ``__dunder__`` nor ``_sunder_``)
defined under ``controller/`` must be referenced somewhere under
``controller/``: called, passed, looked up as an attribute, or named in a
string (``getattr`` by name). Uses in tests do not count: code that only tests
call is dead in the product. Functions registered by a decorator the framework
calls by itself (pydantic's validators and serializers) are exempt.

Read from the source (AST), so it needs no tool of its own.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
PACKAGE = ROOT / "controller"
CALLED_BY_THE_FRAMEWORK = {
    "model_validator",
    "field_validator",
    "model_serializer",
    "field_serializer",
}
_WORD = re.compile(r"\w+")


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("_")


def unused_private(sources: Iterable[tuple[str, str]]) -> list[str]:
    """``where:line name`` of each private function of ``sources`` that nothing references."""
    defined: list[tuple[str, int, str]] = []
    referenced: set[str] = set()
    for where, source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                exempt = any(
                    _decorator_name(d) in CALLED_BY_THE_FRAMEWORK for d in node.decorator_list
                )
                if _private(node.name) and not exempt:
                    defined.append((where, node.lineno, node.name))
            elif isinstance(node, ast.Name):
                referenced.add(node.id)
            elif isinstance(node, ast.Attribute):
                referenced.add(node.attr)
            elif isinstance(node, ast.alias):
                referenced.add(node.asname or node.name.rpartition(".")[2])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                referenced.update(_WORD.findall(node.value))
    return [f"{where}:{line} {name}" for where, line, name in defined if name not in referenced]


def test_every_private_function_of_the_controller_is_used() -> None:
    sources = [
        (str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]
    assert unused_private(sources) == []


def test_the_check_finds_an_unused_function_and_spares_validators() -> None:
    source = (
        "from pydantic import BaseModel, model_validator\n"
        "def _used() -> int:\n"
        "    return 1\n"
        "def _dead() -> int:\n"
        "    return _used()\n"
        "class M(BaseModel):\n"
        "    @model_validator(mode='after')\n"
        "    def _check(self) -> 'M':\n"
        "        return self\n"
        "    def _by_name(self) -> None: ...\n"
        "    def _unused_method(self) -> None: ...\n"
        "    def _missing_(self) -> None: ...\n"
        "HOOK = '_by_name'\n"
    )
    assert unused_private([("m.py", source)]) == ["m.py:4 _dead", "m.py:11 _unused_method"]
