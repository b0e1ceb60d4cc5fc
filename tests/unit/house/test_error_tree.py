"""Every error the controller defines is under one root, listed in core/common/errors.py.

The rule, read from the source (AST, no import):

* every exception class defined under ``controller/`` derives from
  :class:`~controller.core.common.errors.ControllerError`, directly or through
  another one; it may keep a builtin base as well (``DeadlineExceeded`` is
  also a ``TimeoutError``) so that callers catching the builtin still work;
* a builtin exception is raised only where Python's own conventions call for
  it: ``ValueError`` from validators and parsers (pydantic turns it into a
  ``ValidationError``, which the edges report as a ``ConfigError`` or a
  refused input), ``TypeError``, ``NotImplementedError`` and
  ``AssertionError`` for programming errors, ``LookupError`` for a missing
  key or topic, ``ImportError`` for an optional extra that is not installed,
  ``SystemExit`` to exit, and ``RuntimeError`` only in the dev tooling
  (``controller/dev``, ``controller/demo``) for a child process that
  misbehaved;
* the tree in ``controller/core/common/errors.py``'s docstring names every public
  class under the root, and nothing else.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "controller"
ERRORS = "controller.core.common.errors"
BUILTINS_ALLOWED = {
    "ValueError",
    "TypeError",
    "NotImplementedError",
    "AssertionError",
    "LookupError",
    "ImportError",
    "SystemExit",
}
DEV_ROOMS = ("controller.dev", "controller.demo")


@dataclass
class Module:
    classes: dict[str, list[ast.expr]] = field(default_factory=dict)
    imported: dict[str, tuple[str, str]] = field(default_factory=dict)
    raised: list[tuple[int, str]] = field(default_factory=list)


def parse(name: str, source: str) -> Module:
    module = Module()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            module.classes[node.name] = node.bases
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                module.imported[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name):
                module.raised.append((node.lineno, exc.id))
    return module


class Tree:
    """The classes of a set of modules, resolved by name through their imports."""

    def __init__(self, modules: dict[str, Module]) -> None:
        self.modules = modules

    def resolve(self, module: str, name: str) -> tuple[str, str] | None:
        """(module, class) of a class defined in the set, ("builtins", name), or None."""
        seen = set()
        while (module, name) not in seen:
            seen.add((module, name))
            found = self.modules.get(module)
            if found is None:
                return None
            if name in found.classes:
                return module, name
            if name in found.imported:
                module, name = found.imported[name]
                continue
            return ("builtins", name) if hasattr(builtins, name) else None
        return None

    def ancestors(self, module: str, name: str) -> set[tuple[str, str]]:
        """Every class ``name`` derives from, itself included, builtins as ("builtins", x)."""
        todo, seen = [(module, name)], set()
        while todo:
            where, cls = todo.pop()
            if (where, cls) in seen:
                continue
            seen.add((where, cls))
            if where == "builtins":
                base = getattr(builtins, cls, None)
                if isinstance(base, type):
                    seen.update(("builtins", b.__name__) for b in base.__mro__)
                continue
            for base in self.modules[where].classes[cls]:
                if isinstance(base, ast.Name) and (found := self.resolve(where, base.id)):
                    todo.append(found)
        return seen

    def is_exception(self, module: str, name: str) -> bool:
        return ("builtins", "BaseException") in self.ancestors(module, name)

    def under_root(self, module: str, name: str) -> bool:
        return (ERRORS, "ControllerError") in self.ancestors(module, name)

    def problems(self) -> list[str]:
        """Each class outside the root and each builtin raised against the rule."""
        found = []
        for module, parsed in sorted(self.modules.items()):
            for cls in parsed.classes:
                if (module, cls) == (ERRORS, "ControllerError"):
                    continue
                if self.is_exception(module, cls) and not self.under_root(module, cls):
                    found.append(f"{module}.{cls} is not a ControllerError")
            for line, name in parsed.raised:
                target = self.resolve(module, name)
                if target is None or target[0] != "builtins":
                    continue
                dev = module.startswith(DEV_ROOMS) and name == "RuntimeError"
                if name not in BUILTINS_ALLOWED and not dev:
                    found.append(f"{module}:{line} raises the builtin {name}")
        return found

    def public_under_root(self) -> set[str]:
        return {
            cls
            for module, parsed in self.modules.items()
            for cls in parsed.classes
            if not cls.startswith("_")
            and (module, cls) != (ERRORS, "ControllerError")
            and self.under_root(module, cls)
        }


@cache
def controller_tree() -> Tree:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = parse(name, path.read_text(encoding="utf-8"))
    return Tree(modules)


def test_every_error_of_the_controller_is_under_the_root() -> None:
    assert controller_tree().problems() == []


def test_the_tree_in_the_docstring_names_every_error_under_the_root() -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / "core" / "common" / "errors.py").read_text()))
    assert doc is not None
    listed = set(re.findall(r"[├└]── (\w+)", doc))
    assert listed == controller_tree().public_under_root()


def test_the_check_finds_a_class_outside_the_root_and_a_forbidden_builtin() -> None:
    root = controller_tree().modules[ERRORS]
    source = (
        "from controller.core.common.errors import ControllerError\n"
        "class Fine(ControllerError, KeyError): ...\n"
        "class Stray(Exception): ...\n"
        "class Heir(Stray): ...\n"
        "def f() -> None:\n"
        "    raise Heir()\n"
        "def g() -> None:\n"
        "    raise RuntimeError('no')\n"
    )
    tree = Tree({ERRORS: root, "controller.x": parse("controller.x", source)})
    assert tree.problems() == [
        "controller.x.Stray is not a ControllerError",
        "controller.x.Heir is not a ControllerError",
        "controller.x:8 raises the builtin RuntimeError",
    ]
    assert tree.public_under_root() >= {"Fine", "ConfigError"}
