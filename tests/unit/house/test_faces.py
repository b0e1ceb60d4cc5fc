"""Each wing shows a face: other wings import from it, never from a module inside it.

A wing is a sub-package of a hall (``core/``, ``daemon/``, ``ctl/``, ``adapters/``)
or ``process/``. Its ``__init__.py`` is its face: it names with ``__all__`` what
other wings may use, and holds nothing but its docstring, imports and
``__all__``. ``kit/`` is a toolbox, not a wing: each of its modules is a tool
of its own, and importing one (deadlines, say) must not load another's library
(aiokafka), so outsiders import its modules directly. Read from the source
(AST, no import), like the other house rules; docs/architecture.md ("Wings")
says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import controller

PACKAGE = Path(controller.__file__).parent
HALLS = ("core", "daemon", "ctl", "adapters")
LONE_WINGS = ("process",)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def wings(package: Path = PACKAGE) -> dict[str, Path]:
    """Each wing's module name and its face (``__init__.py``)."""
    found = {}
    for face in sorted(package.glob("*/*/__init__.py")):
        if face.parent.parent.name in HALLS:
            found[_module_name(face)] = face
    for name in LONE_WINGS:
        found[_module_name(package / name / "__init__.py")] = package / name / "__init__.py"
    return found


def declared(face: Path) -> list[str]:
    """The names a face's ``__all__`` lists."""
    for node in ast.parse(face.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            assert isinstance(node.value, ast.List | ast.Tuple), f"{face}: __all__ is a literal"
            return [ast.literal_eval(element) for element in node.value.elts]
    return []


def _wing_of(module: str, faces: dict[str, set[str]]) -> str | None:
    return next((w for w in faces if module == w or module.startswith(w + ".")), None)


def reaches(module: str, source: str, faces: dict[str, set[str]]) -> list[str]:
    """Imports in ``source`` (of ``module``) that reach past another wing's face."""
    home = _wing_of(module, faces)
    found = []
    for node in ast.walk(ast.parse(source)):
        targets: list[tuple[str, str | None]]
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for target, name in targets:
            wing = _wing_of(target, faces)
            if wing is None or wing == home:
                continue
            if target != wing:
                found.append(f"{module}:{node.lineno} imports {target}, inside {wing}")
            elif name is not None and name not in faces[wing]:
                found.append(f"{module}:{node.lineno} imports {name}, not on {wing}'s face")
    return found


def _faces() -> dict[str, set[str]]:
    return {wing: set(declared(face)) for wing, face in wings().items()}


def test_the_walk_finds_the_wings() -> None:
    found = wings()
    assert "controller.core.rules" in found
    assert "controller.daemon.ingest" in found
    assert "controller.ctl.report" in found
    assert "controller.kit" not in found
    assert len(found) > 20


def test_no_module_reaches_inside_another_wing() -> None:
    faces = _faces()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += reaches(_module_name(path), path.read_text(encoding="utf-8"), faces)
    assert found == []


def test_a_planted_reach_inside_a_wing_is_found() -> None:
    faces = _faces()
    inside = "from controller.core.rules.audience import AudienceRule\n"
    assert reaches("controller.daemon.planted", inside, faces) == [
        "controller.daemon.planted:1 imports controller.core.rules.audience, inside "
        "controller.core.rules"
    ]
    hidden = "from controller.core.rules import compile_rule_text_privately\n"
    assert reaches("controller.daemon.planted", hidden, faces) == [
        "controller.daemon.planted:1 imports compile_rule_text_privately, not on "
        "controller.core.rules's face"
    ]
    # A wing's own modules import each other directly.
    assert reaches("controller.core.rules.matching", inside, faces) == []
    assert (
        reaches(
            "controller.daemon.planted",
            "from controller.core.rules import parse\n",
            {"controller.core.rules": {"parse"}},
        )
        == []
    )


def test_every_face_lists_exactly_what_it_binds() -> None:
    """As httpx checks its ``__all__``: every public name a face binds is declared, and
    every declared name is bound there."""
    mismatched = {}
    for wing, face in wings().items():
        tree = ast.parse(face.read_text(encoding="utf-8"))
        bound = {
            alias.asname or alias.name
            for node in tree.body
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        public = {name for name in bound if not name.startswith("_")} - {"annotations"}
        listed = declared(face)
        if public != set(listed) or len(listed) != len(set(listed)):
            mismatched[wing] = sorted(public ^ set(listed))
    assert mismatched == {}


def test_a_face_holds_only_its_docstring_imports_and_all() -> None:
    logic = []
    for wing, face in wings().items():
        for n, node in enumerate(ast.parse(face.read_text(encoding="utf-8")).body):
            docstring = n == 0 and isinstance(node, ast.Expr)
            if not (docstring or isinstance(node, ast.ImportFrom | ast.Import | ast.Assign)):
                logic.append(f"{wing}:{node.lineno}")
    assert logic == []


def test_every_wing_says_what_it_is() -> None:
    silent = [
        w for w, face in wings().items() if not ast.get_docstring(ast.parse(face.read_text()))
    ]
    assert silent == []
