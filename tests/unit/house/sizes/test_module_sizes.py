"""No module of the package is longer than 400 lines.

A module that long does more than one thing. One that a change would push
over is split along a seam first (its refusals apart from its translation,
its server apart from its routes), never trimmed of the comments that say
why: the count is of every line, so trimming is what the cap must not ask.
"""

from __future__ import annotations

from pathlib import Path

import controller

MAX_MODULE_LINES = 400
PACKAGE = Path(controller.__file__).parent


def _module_lines() -> dict[str, int]:
    return {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_no_module_of_the_package_is_longer_than_400_lines() -> None:
    modules = _module_lines()
    assert len(modules) > 200  # the walk found the package
    over = {name: lines for name, lines in modules.items() if lines > MAX_MODULE_LINES}
    assert over == {}


MAX_FOLDER_MODULES = 15
"""A folder holds at most this many modules besides its ``__init__.py``: past it, the
folder is a hall to split into wings by role (docs/architecture.md, "Wings")."""


def crowded_folders(package: Path) -> dict[str, int]:
    """Folders of ``package`` holding more than :data:`MAX_FOLDER_MODULES` modules."""
    counts: dict[str, int] = {}
    for path in package.rglob("*.py"):
        if path.name != "__init__.py" and "__pycache__" not in path.parts:
            folder = path.parent.relative_to(package.parent).as_posix()
            counts[folder] = counts.get(folder, 0) + 1
    return {folder: n for folder, n in sorted(counts.items()) if n > MAX_FOLDER_MODULES}


def test_no_folder_of_the_package_holds_more_than_15_modules() -> None:
    assert crowded_folders(PACKAGE) == {}


def test_a_sixteenth_module_makes_a_folder_crowded(tmp_path: Path) -> None:
    wing = tmp_path / "pkg" / "wing"
    wing.mkdir(parents=True)
    (wing / "__init__.py").write_text("")
    for n in range(MAX_FOLDER_MODULES):
        (wing / f"m{n}.py").write_text("")
    assert crowded_folders(tmp_path / "pkg") == {}
    (wing / "m15.py").write_text("")
    assert crowded_folders(tmp_path / "pkg") == {"pkg/wing": 16}
