"""The layout every vector file shares, and the command line that writes or checks one.

A vector file is a JSON object: a header (what the vectors mean, which script
made them) and then ``vectors``, one per line, so a diff of the file shows
which vectors changed. Each generator gives its header and vectors; this
module writes them the same way and compares the file with what it would write.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def render(header: dict[str, Any], vectors: list[dict[str, Any]]) -> str:
    """The file's text: the header's fields, then one vector per line."""
    lines = [json.dumps(v, ensure_ascii=False, sort_keys=True) for v in vectors]
    head = json.dumps(header, ensure_ascii=False, indent=2, sort_keys=True)[:-2]
    return head + ',\n  "vectors": [\n' + ",\n".join(lines) + "\n]}\n"


def write_or_check(argv: list[str], path: Path, make: Callable[[], str], script: str) -> int:
    """Write ``make()`` to ``path``, or with ``--check`` exit 1 when the file differs."""
    text = make()
    if argv[1:] == ["--check"]:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} differs from what {Path(script).name} makes; run it to rewrite")
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {len(json.loads(text)['vectors'])} vectors to {path}")
    return 0
