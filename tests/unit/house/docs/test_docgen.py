"""The docs site's reference pages come from the code, and the site builds with no warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest

from controller.docgen.markdown import cell
from controller.docgen.messages import type_text as schema_type
from controller.docgen.pages import pages, write_pages
from controller.docgen.settings import type_text
from controller.settings import Settings

ROOT = Path(__file__).resolve().parents[4]


@pytest.mark.parametrize(
    ("annotation", "text"),
    [
        (int, "int"),
        (str | None, "str | None"),
        (Literal["earliest", "latest"], '"earliest" | "latest"'),
        (dict[str, list[str]], "dict[str, list[str]]"),
        (Path | None, "Path | None"),
    ],
)
def test_setting_types_read_as_written(annotation: Any, text: str) -> None:
    assert type_text(annotation) == text


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        ({"type": "string"}, "string"),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "integer or null"),
        ({"type": "array", "items": {"$ref": "#/$defs/Stage"}}, "array of Stage"),
        ({"enum": ["a", "b"]}, '"a" | "b"'),
        ({"const": 1}, "1"),
    ],
)
def test_schema_types_read_as_written(schema: dict[str, Any], text: str) -> None:
    assert schema_type(schema) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a | b", "a \\| b"),
        ('`"x" | "y"` or c|d', '`"x" | "y"` or c\\|d'),
        ("two\nlines", "two lines"),
    ],
)
def test_a_table_cell_escapes_pipes_outside_code(text: str, shown: str) -> None:
    assert cell(text) == shown


def test_the_settings_page_has_every_field_with_its_variable_and_default() -> None:
    page = pages()["settings.md"]
    for group, info in Settings.model_fields.items():
        fields = getattr(info.annotation, "model_fields", None)
        names = [f"RC_{group}__{name}" for name in fields] if fields else [f"RC_{group}"]
        for variable in names:
            assert f"`{variable.upper()}`" in page
    assert "| `max_batch_records` | `RC_INGEST__MAX_BATCH_RECORDS` | `int` | `5000` |" in page


def test_the_cli_page_has_every_command_help() -> None:
    page = pages()["cli.md"]
    for heading in (
        "## `rolloutctl`",
        "## `rolloutctl start`",
        "## `rolloutctl plan validate`",
        "## `rollout-controller`",
        "## `rollout-controller dev up`",
    ):
        assert heading in page
    assert "--reason" in page


def test_the_messages_page_names_every_schema(tmp_path: Path) -> None:
    written = write_pages(tmp_path)
    assert sorted(path.name for path in written) == [
        "cli.md",
        "http-api.md",
        "messages.md",
        "settings.md",
    ]
    page = (tmp_path / "messages.md").read_text(encoding="utf-8")
    for schema in sorted((ROOT / "schemas").glob("*.schema.json")):
        assert f"`schemas/{schema.name}`" in page
    assert "Unique id of this message, used for deduplication." in page


def test_the_http_api_page_has_every_operation_with_its_answers() -> None:
    page = pages()["http-api.md"]
    document = json.loads((ROOT / "schemas" / "openapi.json").read_text(encoding="utf-8"))
    for path, item in document["paths"].items():
        for method in (m for m in ("get", "post", "options") if m in item):
            assert f"## {method.upper()} `{path}`" in page
    assert "| 409 | An id was accepted before with other content" in page
    assert "`appKey` (scope `verdicts`), or `operatorToken`, or none" in page


def test_the_site_builds_strictly_offline(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    built = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "reference" / "settings" / "index.html").is_file()
    rings = (tmp_path / "site" / "architecture" / "index.html").read_text(encoding="utf-8")
    assert "--8&lt;--" not in rings  # the plan file was included in its place
    assert "semver" in rings
