"""Every module of the package is under an import-linter contract.

A module outside every contract is a room nobody inspects: its imports could
cross any layer unnoticed. ``lint-imports`` (run by ``make check``) enforces
the contracts; this test makes sure they reach every module.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import controller

ROOT = Path(__file__).resolve().parents[3]


def _modules() -> list[str]:
    package = Path(controller.__file__).parent
    names = []
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def _covered_names() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names: set[str] = set()
    for contract in config["tool"]["importlinter"]["contracts"]:
        for layer in contract.get("layers", []):
            names.update(part.strip() for part in layer.replace(":", "|").split("|"))
        names.update(contract.get("source_modules", []))
        names.update(contract.get("modules", []))
    return names


def _covered(module: str, names: set[str]) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:i]) in names for i in range(2, len(parts) + 1))


def test_every_module_is_under_a_contract() -> None:
    names = _covered_names()
    modules = _modules()
    assert len(modules) > 50
    outside = [m for m in modules if m != "controller" and not _covered(m, names)]
    assert outside == []


def test_the_coverage_check_sees_a_module_outside_every_contract() -> None:
    assert not _covered("controller.unlisted", _covered_names())
    assert _covered("controller.daemon.rollouts.engine", _covered_names())
