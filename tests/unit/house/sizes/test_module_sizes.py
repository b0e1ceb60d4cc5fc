"""No module of the package is longer than 400 lines; no folder of it, or of the tests,
holds more than 15 modules.

A module that long does more than one thing. One that a change would push
over is split along a seam first (its refusals apart from its translation,
its server apart from its routes), never trimmed of the comments that say
why: the count is of every line, so trimming is what the cap must not ask.
"""

from __future__ import annotations

import os
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


NOT_WALKED = frozenset({"__pycache__"})
"""Folders never walked into: bytecode, and under ``tests/`` :data:`NOT_TESTS`."""

NOT_TESTS = NOT_WALKED | {"node_modules", "vectors", "target", "build", "dist"}
"""What ``tests/`` holds that is not test modules: installed npm packages, the shared
test vectors (data, with the scripts that generate them) and build outputs (the Java
app's ``target/``). The Java and Go apps of the OpenTelemetry scenarios hold no Python,
so walking them counts nothing."""

TESTS = Path(__file__).resolve().parents[3]


def folder_modules(root: Path, not_walked: frozenset[str] = NOT_WALKED) -> dict[str, int]:
    """How many modules besides ``__init__.py`` each folder of ``root`` holds (a
    ``conftest.py`` is one), walking neither into links nor into ``not_walked``."""
    counts: dict[str, int] = {}
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if name not in not_walked)
        modules = [name for name in files if name.endswith(".py") and name != "__init__.py"]
        if modules:
            counts[Path(folder).relative_to(root.parent).as_posix()] = len(modules)
    return counts


def crowded_folders(package: Path, not_walked: frozenset[str] = NOT_WALKED) -> dict[str, int]:
    """Folders of ``package`` holding more than :data:`MAX_FOLDER_MODULES` modules."""
    counts = folder_modules(package, not_walked)
    return {folder: n for folder, n in sorted(counts.items()) if n > MAX_FOLDER_MODULES}


def test_no_folder_of_the_package_holds_more_than_15_modules() -> None:
    assert crowded_folders(PACKAGE) == {}


def test_no_folder_of_the_tests_holds_more_than_15_modules() -> None:
    """The tests' folders are split by wing too; their helpers live in ``tests/support/``."""
    walked = folder_modules(TESTS, NOT_TESTS)
    assert {"tests", "tests/support", "tests/integration", "tests/scenarios"} <= set(walked)
    assert crowded_folders(TESTS, NOT_TESTS) == {}


def test_a_conftest_counts_and_installed_packages_do_not(tmp_path: Path) -> None:
    wing = tmp_path / "tests" / "wing"
    (wing / "node_modules" / "pkg").mkdir(parents=True)
    (wing / "__init__.py").write_text("")
    for n in range(MAX_FOLDER_MODULES):
        (wing / f"test_{n}.py").write_text("")
        (wing / "node_modules" / "pkg" / f"m{n}.py").write_text("")
    (wing / "node_modules" / "pkg" / "m15.py").write_text("")
    assert crowded_folders(tmp_path / "tests", NOT_TESTS) == {}
    (wing / "conftest.py").write_text("")
    assert crowded_folders(tmp_path / "tests", NOT_TESTS) == {"tests/wing": 16}


def test_a_sixteenth_module_makes_a_folder_crowded(tmp_path: Path) -> None:
    wing = tmp_path / "pkg" / "wing"
    wing.mkdir(parents=True)
    (wing / "__init__.py").write_text("")
    for n in range(MAX_FOLDER_MODULES):
        (wing / f"m{n}.py").write_text("")
    assert crowded_folders(tmp_path / "pkg") == {}
    (wing / "m15.py").write_text("")
    assert crowded_folders(tmp_path / "pkg") == {"pkg/wing": 16}
