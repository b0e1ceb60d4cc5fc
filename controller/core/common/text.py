"""Untrusted text made safe to show a person: the one sanitiser for every surface.

Flag keys, reasons, actors, alert details and, above all, the model's words
come from outside. Escaping keeps them from forming markup; this keeps them
from changing how the text around them reads:

* **bidirectional controls** (U+202A to U+202E embeddings and overrides,
  U+2066 to U+2069 isolates, U+200E/U+200F marks, U+061C) reorder what
  follows them, so ``exe.txt`` can read as ``txt.exe`` and a reason can
  appear to say the opposite of what it holds (the "Trojan Source" trick);
* **control characters** (C0 but tab and newline, DEL, C1) rewrite a
  terminal: ESC starts colour and cursor sequences, CR returns to the start
  of the line, so a line can overwrite the one before it;
* **line and paragraph separators** (U+2028, U+2029) break lines where
  renderers do not expect it.

Each is replaced with U+FFFD, so the tampering stays visible and the text
keeps its length. :func:`displayable` runs where text enters (the model's
reply is parsed) and where it is rendered (console, reports, CLI, Slack):
text stored before this existed is cleaned when shown.
"""

from __future__ import annotations

import html
import re

REPLACEMENT = "\ufffd"
UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)
"""Characters never shown as they are: see the module docstring."""


def displayable(text: str) -> str:
    """``text`` with every :data:`UNSAFE` character replaced by U+FFFD."""
    return UNSAFE.sub(REPLACEMENT, text)


def html_text(value: object) -> str:
    """``value`` as text for HTML content or a quoted attribute: displayable, then escaped."""
    return html.escape(displayable(str(value)), quote=True)
