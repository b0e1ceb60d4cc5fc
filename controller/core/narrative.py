"""A model's short account of a rollout, kept only if every number in it is true.

A canary report may open with a few sentences written by the model. A model,
small ones especially, invents or garbles numbers, so the narrative is checked
before it is shown: every number in it must be one of the facts the model was
given (as written, or that fact rounded to the precision the narrative shows,
or a share written as a percent), else the whole narrative is dropped and the
report says why. Pure: the prompt, the reply's schema and the checker; the
call to the model is the caller's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from controller.core.text import displayable

MAX_NARRATIVE_CHARS = 1200
MINUS = "\u2212"
"""The minus sign a model may write instead of a hyphen."""
MAX_FACTS = 60
PROMPT_VERSION = "narrative-v1"

NARRATIVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"narrative": {"type": "string", "maxLength": MAX_NARRATIVE_CHARS}},
    "required": ["narrative"],
    "additionalProperties": False,
}

SYSTEM = (
    "You summarise a feature-flag rollout for an operator in two to four plain sentences. "
    "Use only the facts given. Copy every number exactly as it is written in the facts; "
    "do not compute, round or invent numbers. Do not give advice. "
    'Reply with JSON: {"narrative": "..."}'
)

_NUMBER = re.compile(
    r"(?<![\w.])([-+\u2212]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|[-+\u2212]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r"(\s*(?:%|pp\b))?"
)


@dataclass(frozen=True, slots=True)
class Written:
    """A number as the narrative writes it: its value, its decimals, and if it is a percent."""

    text: str
    value: Decimal
    decimals: int
    percent: bool


def messages(facts: list[str]) -> list[dict[str, str]]:
    """The chat messages asking for a narrative of ``facts`` (sentences with numbers)."""
    listed = "\n".join(f"- {fact}" for fact in facts[:MAX_FACTS])
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Facts:\n{listed}"},
    ]


def numbers_in(text: str) -> list[Written]:
    """Every number written in ``text``, with its precision and whether it is a percent."""
    found = []
    for match in _NUMBER.finditer(text):
        raw = match.group(1).replace(",", "").replace(MINUS, "-")
        try:
            value = Decimal(raw)
        except InvalidOperation:
            continue
        if not value.is_finite():
            continue
        exponent = value.as_tuple().exponent
        decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        found.append(Written(match.group(0).strip(), value, decimals, bool(match.group(2))))
    return found


def unsupported(narrative: str, facts: list[str]) -> list[str]:
    """The numbers of ``narrative`` that no fact supports; empty when every one is true."""
    known = [n.value for fact in facts for n in numbers_in(fact)]
    return [n.text for n in numbers_in(narrative) if not _supported(n, known)]


def accepted(reply: Any, facts: list[str]) -> tuple[str | None, str]:
    """The narrative in a model's parsed reply if it is sound, else None; and why not."""
    text = reply.get("narrative") if isinstance(reply, dict) else None
    if not isinstance(text, str) or not text.strip():
        return None, "the model wrote no narrative"
    text = " ".join(displayable(text).split())
    if len(text) > MAX_NARRATIVE_CHARS:
        return None, "the model's narrative is too long"
    wrong = unsupported(text, facts)
    if wrong:
        shown = ", ".join(wrong[:5])
        return None, f"it held numbers that are not in the evidence ({shown})"
    return text, ""


def _supported(written: Written, known: list[Decimal]) -> bool:
    """A fact equals the number, or rounds to it at the precision shown.

    A number written without a sign may stand for a fact's magnitude ("fell by
    0.5" for a delta of -0.5). Rounding is accepted only for numbers written
    with at least two significant digits, so "0" or "1" cannot pass for any
    small or middling value.
    """
    candidates = list(known)
    if written.percent:
        candidates += [k * 100 for k in known]
    signless = not written.text.startswith(("-", "+", MINUS))
    rounding = _significant(written.value) >= 2
    for fact in candidates:
        value = abs(fact) if signless else fact
        if value == written.value or (
            rounding and _rounded(value, written.decimals) == written.value
        ):
            return True
    return False


def _rounded(value: Decimal, decimals: int) -> Decimal | None:
    try:
        return value.quantize(Decimal(1).scaleb(-decimals))
    except InvalidOperation:  # too many digits for the context: not this one
        return None


def _significant(value: Decimal) -> int:
    return len(value.normalize().as_tuple().digits) if value != 0 else 1
