"""MkDocs hooks: the reference pages are written from the code before every build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.docgen.pages import write_pages


def on_pre_build(config: Any) -> None:
    write_pages(Path(config["docs_dir"]) / "reference")
