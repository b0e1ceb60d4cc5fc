"""Each reference page as Markdown text, and writing them all to a folder."""

from __future__ import annotations

from pathlib import Path

from controller.docgen.commands import commands_page
from controller.docgen.http_api import http_api_page
from controller.docgen.messages import messages_page
from controller.docgen.settings import settings_page

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def pages(schemas: Path = SCHEMAS) -> dict[str, str]:
    """The file name of each reference page, and its text."""
    return {
        "settings.md": settings_page(),
        "cli.md": commands_page(),
        "messages.md": messages_page(schemas),
        "http-api.md": http_api_page(schemas / "openapi.json"),
    }


def write_pages(out: Path, schemas: Path = SCHEMAS) -> list[Path]:
    """Write every page into ``out``, rewriting only those whose text changed."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, text in pages(schemas).items():
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
