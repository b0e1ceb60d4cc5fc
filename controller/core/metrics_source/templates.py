"""Query templates: PromQL with placeholders the controller fills, safely.

A guardrail that reads Prometheus names its queries in the plan as PromQL
with placeholders in double braces, as Flagger's and Argo Rollouts' metric
templates write them::

    sum(increase(http_requests_total{feature="{{flag}}", variant="{{arm}}",
                                     code=~"5.."}[{{window}}]))

* ``{{flag}}``: the flag's own key (``checkout``, in every environment),
  ``{{environment}}``: the rollout's environment (``staging``; the default
  environment's name there), and ``{{arm}}``: the arm's label value (the
  plan's ``arms``), only **inside a quoted string** (a label matcher's value);
* ``{{window}}``: the stage's age as a PromQL duration (``125s``), and
  ``{{stage_start}}``: the stage's start in Unix seconds (for ``@``), only
  **outside** strings.

A template is scanned once, when the plan is validated: strings (``"…"``,
``'…'`` and raw ````…````, with their escapes) and ``#`` comments are told
apart from code, so each placeholder is known to sit where it may. An unknown
placeholder, one in the wrong place or in a comment, an unclosed ``{{`` or an
unclosed string is refused with what was found; the field is named by the plan.

Filling cannot change the query's shape: a flag key or a label value must
match :data:`SAFE_VALUE` (letters, digits, ``. _ : -``, as flag keys are
bounded on the wire), so it can hold no quote, backslash, brace or space and
never leaves its string; it is still escaped for the string's quote. In a
regular-expression matcher (``=~``, ``!~``) it is matched literally: its
dots are escaped. Durations and instants are numbers the controller writes.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

from controller.core.common import ControllerError

PLACEHOLDERS: dict[str, str] = {
    "flag": "the flag key (its own, without the environment), inside a quoted label value",
    "environment": "the rollout's environment (engine.environments), inside a quoted label value",
    "arm": "the arm's label value (the plan's arms), inside a quoted label value",
    "window": "the stage's age as a PromQL duration (125s), for range selectors",
    "stage_start": "the stage's start in Unix seconds, for the @ modifier",
}
"""Every placeholder a template may use, with where it goes."""
QUOTED = frozenset({"flag", "arm", "environment"})
"""Placeholders that may only stand inside a quoted string."""
BARE = frozenset({"window", "stage_start"})
"""Placeholders that may only stand outside strings."""
SAFE_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
"""What a flag key or an arm's label value must be to be filled in (fully matched)."""
MAX_TEMPLATE_CHARS = 2000
"""The longest query template a plan may hold."""
_REGEX_SPECIAL = re.compile(r"([.\\+*?()|\[\]{}^$])")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)?\s*\}\}")

Quote = Literal['"', "'", "`", ""]


class TemplateError(ControllerError, ValueError):
    """A template that cannot be filled safely; the message says what and where."""


class UnsafeValue(ControllerError, ValueError):
    """A value that may not be filled into a query (a flag key or label value)."""


@dataclass(frozen=True, slots=True)
class Slot:
    """One placeholder: its name, the quote of the string it stands in ("" outside one),
    and whether that string is a regular expression (after ``=~`` or ``!~``)."""

    name: str
    quote: Quote
    regex: bool


@dataclass(frozen=True, slots=True)
class Template:
    """A scanned template: literal text and slots, in order."""

    text: str
    parts: tuple[str | Slot, ...]

    @property
    def names(self) -> frozenset[str]:
        """The placeholders the template uses."""
        return frozenset(p.name for p in self.parts if isinstance(p, Slot))


@functools.lru_cache(maxsize=1024)
def parse_template(text: str) -> Template:
    """Scan ``text``; :class:`TemplateError` names the first problem and its offset.

    Remembered: every reading of every rollout fills the same few templates.
    """
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"a query template holds at most {MAX_TEMPLATE_CHARS} characters")
    if not text.strip():
        raise TemplateError("the query is empty")
    return Template(text, tuple(_Scanner(text).parts()))


class _Scanner:
    """Walks a template once, in code, in a string or in a comment."""

    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0
        self.out: list[str | Slot] = []
        self.literal: list[str] = []

    def parts(self) -> list[str | Slot]:
        while self.i < len(self.text):
            char = self.text[self.i]
            if char in "\"'`":
                self._string(char)  # type: ignore[arg-type]
            elif char == "#":
                self._comment()
            elif self.text.startswith("{{", self.i):
                self._slot("", regex=False)
            else:
                self._take(1)
        self._flush()
        return self.out

    def _take(self, count: int) -> None:
        self.literal.append(self.text[self.i : self.i + count])
        self.i += count

    def _flush(self) -> None:
        if self.literal:
            self.out.append("".join(self.literal))
            self.literal = []

    def _string(self, quote: Quote) -> None:
        start, regex = self.i, _regex_before(self.text, self.i)
        self._take(1)
        while self.i < len(self.text):
            char = self.text[self.i]
            if char == quote:
                self._take(1)
                return
            if char == "\\" and quote != "`":
                self._take(2)
            elif self.text.startswith("{{", self.i):
                self._slot(quote, regex=regex)
            elif char == "\n" and quote != "`":
                break
            else:
                self._take(1)
        raise TemplateError(f"the string opened at offset {start} is not closed")

    def _comment(self) -> None:
        end = self.text.find("\n", self.i)
        end = len(self.text) if end < 0 else end
        if "{{" in self.text[self.i : end]:
            raise TemplateError(f"a placeholder in the comment at offset {self.i}")
        self._take(end - self.i)

    def _slot(self, quote: Quote, *, regex: bool) -> None:
        found = _PLACEHOLDER.match(self.text, self.i)
        if found is None:
            raise TemplateError(f"'{{{{' at offset {self.i} opens no placeholder")
        name = found.group(1) or ""
        if name not in PLACEHOLDERS:
            known = ", ".join(f"{{{{{n}}}}}" for n in sorted(PLACEHOLDERS))
            raise TemplateError(f"unknown placeholder {found.group(0)!r}; known: {known}")
        if quote and name in BARE:
            raise TemplateError(f"{{{{{name}}}}} must stand outside a string (offset {self.i})")
        if not quote and name in QUOTED:
            raise TemplateError(
                f"{{{{{name}}}}} must stand inside a quoted label value, as in"
                f' variant="{{{{{name}}}}}" (offset {self.i})'
            )
        self._flush()
        self.out.append(Slot(name, quote, regex))
        self.i = found.end()


def _regex_before(text: str, at: int) -> bool:
    """Whether the string opening at ``at`` follows ``=~`` or ``!~`` (a regex matcher)."""
    return text[:at].rstrip().endswith(("=~", "!~"))


def safe_value(value: str, *, what: str) -> str:
    """``value`` if it may be filled into a query; :class:`UnsafeValue` naming ``what``."""
    if not SAFE_VALUE.fullmatch(value):
        raise UnsafeValue(
            f"{what} {value[:64]!r} cannot be used in a query: 1 to 128 letters, digits,"
            " '.', '_', ':' or '-', starting with a letter or digit"
        )
    return value


def fill(
    template: Template,
    *,
    flag: str,
    arm: str,
    window_s: float,
    start_s: float,
    environment: str = "default",
) -> str:
    """The query with every placeholder filled; :class:`UnsafeValue` for a bad flag, arm or
    environment."""
    values = {
        "flag": safe_value(flag, what="the flag key"),
        "arm": safe_value(arm, what="the arm's label value"),
        "environment": safe_value(environment, what="the environment"),
        "window": duration(window_s),
        "stage_start": f"{max(start_s, 0.0):.3f}",
    }
    return "".join(
        part if isinstance(part, str) else _quoted(values[part.name], part)
        for part in template.parts
    )


def _quoted(value: str, slot: Slot) -> str:
    if not slot.quote:
        return value
    if slot.regex:
        value = _REGEX_SPECIAL.sub(r"\\\1", value)
    if slot.quote == "`":
        return value
    return value.replace("\\", "\\\\").replace(slot.quote, "\\" + slot.quote)


def duration(seconds: float) -> str:
    """A PromQL duration of whole seconds, at least one: ``125s``."""
    return f"{max(int(seconds), 1)}s"
