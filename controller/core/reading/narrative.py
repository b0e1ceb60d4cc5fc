"""A model's short account of a rollout, each sentence kept only if every number in it is true.

A canary report may open with a few sentences written by the model. A model,
small ones especially, invents or garbles numbers, so the narrative is checked
before it is shown: every number in a sentence must be one of the facts the
model was given (as written, or that fact rounded to the precision the
narrative shows, or a share written as a percent), else the sentence is
dropped, and the report says how many were and why; with none left there is
no narrative. Numbers are found by :mod:`controller.core.common.numerals`, which
treats any word holding a numeric character of any script or a number word
as a number: one it cannot read (``½``, ``x40``, ``.74``, "twice") is one no
fact supports, so a sentence holding it is dropped, never shown unchecked.
Pure: the prompt, the reply's schema and the checker; the call to the model
is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from controller.core.common import (
    MINUS,
    Numeral,
    Written,
    displayable,
    numbers_in,
    numerals_of,
    numeric,
    sentences,
    stripped,
)
from controller.core.wire import JsonObject

MAX_NARRATIVE_CHARS = 1200
MAX_FACTS = 60
PROMPT_VERSION = "narrative-v1"

NARRATIVE_SCHEMA: JsonObject = {
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

_UNSUPPORTED_SHOWN = 5


@dataclass(frozen=True, slots=True)
class Checked:
    """A narrative after the check: the sentences kept, and what the dropped ones held."""

    text: str
    kept: int
    dropped: int
    wrong: tuple[str, ...]
    """The numbers of the dropped sentences that no fact supports or that cannot be read."""


def messages(facts: list[str]) -> list[dict[str, str]]:
    """The chat messages asking for a narrative of ``facts`` (sentences with numbers)."""
    listed = "\n".join(f"- {fact}" for fact in facts[:MAX_FACTS])
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Facts:\n{listed}"},
    ]


def unsupported(narrative: str, facts: list[str]) -> list[str]:
    """The numbers of ``narrative`` that no fact supports or that cannot be read."""
    return _Known(facts).unsupported(narrative.split())


def check(narrative: str, facts: list[str]) -> Checked:
    """``narrative`` with every sentence dropped that holds a number no fact supports.

    A number the reader cannot turn into a value (``½``, ``x40``, "twice") is
    one no fact supports: it is never shown unchecked.
    """
    known = _Known(facts)
    kept, wrong, dropped = [], [], 0
    for words in sentences(narrative):
        bad = known.unsupported(words)
        if bad:
            dropped += 1
            wrong += bad
        else:
            kept.append(" ".join(words))
    return Checked(" ".join(kept), len(kept), dropped, tuple(wrong))


def accepted(reply: Any, facts: list[str]) -> tuple[str | None, str]:
    """The checked narrative in a model's parsed reply, or None; and what was dropped, why.

    The reason is empty when the whole narrative was kept; with some sentences
    kept it says how many were dropped, for the report to note.
    """
    text = reply.get("narrative") if isinstance(reply, dict) else None
    if not isinstance(text, str) or not text.strip():
        return None, "the model wrote no narrative"
    text = " ".join(displayable(text).split())
    if len(text) > MAX_NARRATIVE_CHARS:
        return None, "the model's narrative is too long"
    checked = check(text, facts)
    if not checked.dropped:
        return checked.text, ""
    shown = ", ".join(checked.wrong[:_UNSUPPORTED_SHOWN])
    numbers = f"numbers that are not in the evidence or cannot be checked ({shown})"
    if not checked.kept:
        return None, f"it held {numbers}"
    total = checked.kept + checked.dropped
    return checked.text, f"{checked.dropped} of its {total} sentences dropped: they held {numbers}"


class _Known:
    """The facts' numbers, and their words as written (a name like ``latency_p99``)."""

    def __init__(self, facts: list[str]) -> None:
        words = [stripped(w) for fact in facts for w in fact.split()]
        written = [n for fact in facts for n in numbers_in(fact) if isinstance(n, Written)]
        self.values = [n.value for n in written]
        # A percent is true if a fact gives it as a percent, or gives the share it is
        # (a delta of 0.0204 is 2.04%); never a count or a p of 1 read as 100%.
        self.percents = [n.value for n in written if n.percent] + [
            n.value * 100 for n in written if _share(n)
        ]
        self.words = set(words) | {piece for w in words for piece in w.split("_")}

    def unsupported(self, words: list[str]) -> list[str]:
        """The numbers of ``words`` no fact supports, as written.

        A word of numbers joined by a slash must be one the facts write: "3/5"
        is a stage label as the facts give it, but "1/2" is a fraction, and
        "1" and "2" each being somewhere in the facts does not make it true.
        """
        bad, plain = [], []
        for word in words:
            bare = stripped(word)
            slashed = "/" in bare and numeric(bare) and bare not in self.words
            bad += [bare] if slashed else []
            plain.append("" if slashed else word)
        return bad + [n.text for n in numerals_of(plain) if not self.supports(n)]

    def supports(self, number: Numeral) -> bool:
        if number.text in self.words:  # copied as the facts write it
            return True
        if not isinstance(number, Written):
            return False
        return _supported(number, self.percents if number.percent else self.values)


def _share(number: Written) -> bool:
    """A fact that may be a share: written with decimals, at most 1 in size, not a percent."""
    return not number.percent and number.decimals > 0 and abs(number.value) <= 1


def _supported(written: Written, known: list[Decimal]) -> bool:
    """A fact (of the number's kind: a percent or not) equals it, or rounds to it at the
    precision shown.

    A number written without a sign may stand for a fact's magnitude ("fell by
    0.5" for a delta of -0.5). Rounding is accepted only for numbers written
    with at least two significant digits, so "0" or "1" cannot pass for any
    small or middling value.
    """
    signless = not written.text.startswith(("-", "+", MINUS))
    rounding = _significant(written.value) >= 2
    for fact in known:
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
