"""``python -m controller.docgen [DIR]``: write the reference pages (default ``docs/reference``)."""

from __future__ import annotations

import sys
from pathlib import Path

from controller.docgen.pages import write_pages


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("docs/reference")
    for path in write_pages(out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
