"""MkDocs hooks: the reference pages are written from the code before every build."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# the checkout being built, whatever copy of the package the environment installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.docgen.pages import write_pages


def on_pre_build(config: Any) -> None:
    write_pages(Path(config["docs_dir"]) / "reference")
