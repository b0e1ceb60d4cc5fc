"""docs/otel.md's Go set-up is the Go app the scenario builds: same modules, same code.

The code is included from ``tests/otel/go`` when the site is built (pymdownx
snippets, between ``--8<-- [start:NAME]`` and ``[end:NAME]`` markers); the
``go get`` line is text, so its modules and versions are checked here against
the app's ``go.mod``.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
DOC = ROOT / "docs" / "otel.md"
APP = ROOT / "tests" / "otel" / "go"
_REQUIRE = re.compile(r"^\s*(\S+) (v\S+)$", re.MULTILINE)
_GET = re.compile(r"(\S+)@(v\S+)")
_INCLUDE = re.compile(r'--8<-- "tests/otel/go/([^":]+):([^"]+)"')


def _go_section() -> str:
    text = DOC.read_text()
    start = text.index("### Go\n")
    return text[start : text.index("\n## ", start)]


def _direct_requirements() -> dict[str, str]:
    go_mod = (APP / "go.mod").read_text()
    block = go_mod[go_mod.index("require (") : go_mod.index(")", go_mod.index("require ("))]
    return dict(_REQUIRE.findall(block))


def test_the_docs_go_get_names_the_modules_and_versions_the_app_requires() -> None:
    section = _go_section()
    command = section[section.index("go get ") : section.index("```", section.index("go get "))]
    assert dict(_GET.findall(command)) == _direct_requirements()


def test_each_snippet_the_docs_include_is_marked_in_the_apps_source() -> None:
    included = _INCLUDE.findall(_go_section())
    assert {name for _, name in included} >= {"imports", "setup", "handler", "server"}
    for file, name in included:
        source = (APP / file).read_text()
        assert f"--8<-- [start:{name}]" in source, name
        assert f"--8<-- [end:{name}]" in source, name
