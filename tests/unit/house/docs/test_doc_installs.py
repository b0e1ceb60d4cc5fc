"""Every install command in the docs installs what the tests run, so a snippet the docs show
works with what its own install line resolves.

An unpinned ``npm install`` resolves whatever is newest, and a newer OpenTelemetry
JS SDK changed a constructor under the docs' Node snippet: the app exported
nothing and said nothing. So each package an install command in a code block of
``docs/`` names is pinned to what the tests install: npm packages at the exact
versions of ``tests/node/package.json`` or ``clients/js/package.json`` (their
locks agree), Python packages with the very specifier ``pyproject.toml`` gives
them. Local paths and the controller's own packages are what the checkout holds.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
NODE_MANIFESTS = ("tests/node/package.json", "clients/js/package.json")
OWN = ("rollout-controller", "rollout-controller-sdk", ".", "-e")
FENCE = re.compile(r"^```.*?$(.*?)^```", re.DOTALL | re.MULTILINE)
COMMAND = re.compile(r"^\s*(?:#|//)?\s*((?:npm|pip) install\b.*)$")


def install_commands() -> list[tuple[str, str]]:
    """(where, command) for each install command in a fenced block of the docs; a command
    continued over lines with a backslash is one."""
    found = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for block in FENCE.findall(page.read_text()):
            text = block.replace("\\\n", " ")
            for line in text.splitlines():
                match = COMMAND.match(line)
                if match:
                    found.append((page.name, match.group(1).split(" # ")[0].strip()))
    return found


def node_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for manifest in NODE_MANIFESTS:
        data = json.loads((ROOT / manifest).read_text())
        for section in ("dependencies", "devDependencies"):
            versions.update(data.get(section, {}))
        lock = json.loads((ROOT / manifest).with_name("package-lock.json").read_text())
        for name, version in data.get("dependencies", {}).items():
            assert lock["packages"][f"node_modules/{name}"]["version"] == version, name
    return versions


def python_specifiers() -> dict[str, set[str]]:
    """Each package ``pyproject.toml`` names, with its specifiers (one an extra)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    named: dict[str, set[str]] = {}
    for requirement in requirements:
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?(.*)$", requirement)
        assert match is not None, requirement
        named.setdefault(match.group(1).lower(), set()).add(match.group(3).replace(" ", ""))
    return named


def unpinned(command: str) -> list[str]:
    """What of ``command`` is not what the tests install, in words."""
    words = shlex.split(command)
    tool, names = words[0], [w for w in words[2:] if not w.startswith("-")]
    names = [n for n in names if not n.startswith((".", "/")) and n.split("[")[0] not in OWN]
    if tool == "npm":
        tested = node_versions()
        return [n for n in names if tested.get(n.rpartition("@")[0]) != n.rpartition("@")[2]]
    tested_py = python_specifiers()
    wrong = []
    for name in names:
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?(.*)$", name)
        assert match is not None, name
        if match.group(3) not in tested_py.get(match.group(1).lower(), set()):
            wrong.append(name)
    return wrong


def test_the_docs_hold_install_commands() -> None:
    pages = {page for page, _ in install_commands()}
    assert {"otel.md", "clients.md"} <= pages


@pytest.mark.parametrize(("page", "command"), install_commands())
def test_every_package_an_install_command_names_is_pinned_to_what_the_tests_run(
    page: str, command: str
) -> None:
    assert unpinned(command) == [], f"{page}: {command}"


@pytest.mark.parametrize(
    ("command", "wrong"),
    [
        ("npm install @opentelemetry/sdk-node", ["@opentelemetry/sdk-node"]),
        ("npm install @opentelemetry/sdk-node@0.223.0", ["@opentelemetry/sdk-node@0.223.0"]),
        ("npm install @opentelemetry/sdk-node@0.205.0 ./clients/js", []),
        ("pip install openfeature-sdk", ["openfeature-sdk"]),
        ("pip install 'openfeature-sdk>=0.10,<0.11' ./packaging/sdk", []),
        ("pip install -e .", []),
    ],
)
def test_the_check_tells_a_pinned_package_from_an_unpinned_one(
    command: str, wrong: list[str]
) -> None:
    assert unpinned(command) == wrong
