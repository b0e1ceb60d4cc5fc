"""One inventory of the package's rooms, which docs/layout.md and docs/architecture.md both show.

The rooms are those of the layers contract in ``pyproject.toml`` (top to
bottom; rooms of one layer never import each other), each described by the
first line of its docstring (a package's ``__init__``); the modules inside a
room are left to their own docstrings, so that splitting a module does not
change the inventory. Both
documents carry the same generated table between the two markers; after a
change of rooms, docstrings or modules, rewrite it with::

    .venv/bin/python tests/unit/house/test_rooms.py --write
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOCUMENTS = (ROOT / "docs" / "layout.md", ROOT / "docs" / "architecture.md")
BEGIN = (
    "<!-- rooms: generated from pyproject.toml's layers and each room's docstring "
    "by tests/unit/house/test_rooms.py -->"
)
END = "<!-- /rooms -->"


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _split(layer: str) -> list[str]:
    return [room.strip() for room in layer.split("|")]


def layers() -> list[list[str]]:
    """The rooms of each layer, top to bottom, as dotted module names."""
    contract = next(c for c in _contracts() if "layers" in c and "containers" not in c)
    return [_split(layer) for layer in contract["layers"]]  # type: ignore[attr-defined]


def wings() -> dict[str, list[list[str]]]:
    """Per hall with a layers contract of its own, its wings of each layer, top to bottom."""
    halls = {}
    for contract in _contracts():
        if "layers" in contract and "containers" in contract:
            for hall in contract["containers"]:  # type: ignore[attr-defined]
                inner = contract["layers"]
                halls[hall] = [[f"{hall}.{w}" for w in _split(layer)] for layer in inner]  # type: ignore[attr-defined]
    return halls


def _summary(path: Path) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring, f"{path.relative_to(ROOT)} has no docstring to describe its room"
    return docstring.splitlines()[0].replace("|", "\\|")


def table() -> str:
    """The inventory as a Markdown table between its markers."""
    rows = [BEGIN, "", "| Layer | Room | What it is |", "| --- | --- | --- |"]
    halls = wings()
    for number, rooms in enumerate(layers(), start=1):
        for room in rooms:
            rows.append(_row(str(number), room))
            for floor, inner in enumerate(halls.get(room, []), start=1):
                rows += [_row(f"{number}.{floor}", wing, indent=True) for wing in inner]
    return "\n".join([*rows, "", END])


def _row(number: str, room: str, *, indent: bool = False) -> str:
    path = ROOT / Path(*room.split("."))
    if path.is_dir():
        name, summary = f"`{room.replace('.', '/')}/`", _summary(path / "__init__.py")
    else:
        name, summary = f"`{room.replace('.', '/')}.py`", _summary(path.with_suffix(".py"))
    return f"| {number} | {'&nbsp;&nbsp;' if indent else ''}{name} | {summary} |"


def shown(document: Path) -> str:
    """The inventory block ``document`` carries, markers included ('' if none)."""
    text = document.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    return text[start : end + len(END)] if 0 <= start < end else ""


def write() -> None:
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        old = shown(document)
        assert old, f"{document.relative_to(ROOT)} has no inventory markers"
        document.write_text(text.replace(old, table()), encoding="utf-8")


def test_both_documents_show_the_inventory_of_the_rooms() -> None:
    expected = table()
    for document in DOCUMENTS:
        assert shown(document) == expected, (
            f"{document.relative_to(ROOT)}: run "
            "`.venv/bin/python tests/unit/house/test_rooms.py --write`"
        )


def test_the_inventory_names_every_room_of_the_layers() -> None:
    rooms = [room for layer in layers() for room in layer]
    generated = table()
    assert len(rooms) > 15
    for room in rooms:
        assert f"`{room.replace('.', '/')}" in generated
    assert "`controller/daemon/` | The daemon's services" in generated


def test_the_inventory_shows_each_wing_of_a_hall_under_it() -> None:
    generated = table()
    halls = wings()
    assert set(halls) == {"controller.core", "controller.daemon", "controller.ctl"}
    for inner in halls.values():
        for wing in (w for layer in inner for w in layer):
            assert f"`{wing.replace('.', '/')}" in generated
    assert "`controller/core/rules/` | Audiences and targeting rules" in generated


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    write()
