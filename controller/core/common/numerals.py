"""Every way a text writes a number: read as a value, or marked as one that cannot be read.

A checker of numbers is only as good as its reader: a pattern for ``\\d+``
misses ``.74``, ``Δ74%``, ``x40``, ``5 000 000``, ``½``, ``10⁶``, ``٧٤`` and
"forty thousand", and whatever it misses passes unchecked. So this module
does not look for numbers it knows; it looks at every word and treats as
numeric any word holding a character Unicode gives a numeric value (a digit
of any script, a fraction, a superscript, a Roman or CJK numeral) or a number
word. Each is then either read as a plain decimal as the report writes them
(``1,523``, ``-0.5``, ``6.5e-69``, ``25%``, ``0.5 pp``, ``3/5``, ``forty
thousand``) or returned as :class:`Unreadable`; a caller that checks numbers
treats an unreadable one as unchecked, never as absent.

Pure and linear: words are split on whitespace, and the one regular
expression matches a single word with no nested ambiguity.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

MINUS = "\u2212"
"""The minus sign a model may write instead of a hyphen."""
_DECIMAL = re.compile(
    r"[-+\u2212]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?(?:[eE][-+\u2212]?[0-9]+)?"
)
_QUOTES_OPEN = "\"'\u00ab\u201c\u2018"
_QUOTES_CLOSE = "\"'\u00bb\u201d\u2019"
_OPENING = "([{<" + _QUOTES_OPEN
_CLOSING = ")]}>" + _QUOTES_CLOSE + ",;:!?."
_SEPARATORS = ("/", ":", "=", "\u2013", "\u2014")
"""What may join two numbers in one word: ``3/5``, ``10:01``, ``p=0.03``, ``1\u20135``."""
_SENTENCE_END = ".!?"

_UNITS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
CARDINALS: dict[str, int] = {word: value for value, word in enumerate(_UNITS)} | {
    word: 20 + 10 * i for i, word in enumerate(_TENS)
}
CARDINALS["dozen"] = 12
SCALES: dict[str, int] = {
    "hundred": 100,
    "thousand": 1_000,
    "million": 1_000_000,
    "billion": 1_000_000_000,
    "trillion": 1_000_000_000_000,
}
VAGUE = frozenset(
    [
        "half",
        "halves",
        "halved",
        "twice",
        "double",
        "doubled",
        "doubles",
        "doubling",
        "triple",
        "tripled",
        "triples",
        "thrice",
        "quadruple",
        "quadrupled",
        "tenfold",
        "hundredfold",
        "thousandfold",
        "quarter",
        "quarters",
        "dozens",
        "hundreds",
        "thousands",
        "millions",
        "billions",
        "trillions",
    ]
)
"""Words that claim a number no fact states as such (a ratio, a vague amount)."""
PERCENT_WORDS = frozenset({"percent", "per-cent", "pct"})
RATIO_WORDS = frozenset({"times", "fold", "-fold", "x", "\u00d7"})
"""Words after a number that make it a ratio ("5 times the errors"): a claim no fact states,
whatever the number, so it cannot be checked."""
_WORDS = frozenset(CARDINALS) | frozenset(SCALES) | VAGUE


@dataclass(frozen=True, slots=True)
class Written:
    """A number as the text writes it: its value, its decimals, and if it is a percent."""

    text: str
    value: Decimal
    decimals: int
    percent: bool


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A numeric word this reader cannot turn into a value: it cannot be checked."""

    text: str


Numeral = Written | Unreadable


def numeric(word: str) -> bool:
    """Whether ``word`` holds a number: a numeric character of any script, or a number word."""
    return _has_numeric_char(word) or any(p in _WORDS for p in word.lower().split("-"))


def stripped(word: str) -> str:
    """``word`` without the brackets, quotes and punctuation around it (a leading dot stays)."""
    return word.lstrip(_OPENING).rstrip(_CLOSING)


def sentences(text: str) -> list[list[str]]:
    """``text`` as sentences of words: a sentence ends with a word ending in . ! or ?"""
    out: list[list[str]] = [[]]
    for word in text.split():
        out[-1].append(word)
        if word.rstrip(")]}>" + _QUOTES_CLOSE).endswith(tuple(_SENTENCE_END)):
            out.append([])
    return [sentence for sentence in out if sentence]


def numbers_in(text: str) -> list[Numeral]:
    """Every number written in ``text``: read, or unreadable."""
    return list(numerals_of(text.split()))


def numerals_of(words: list[str]) -> Iterator[Numeral]:
    """The numbers of a run of words, in order."""
    i = 0
    while i < len(words):
        found, used = _at(words, i)
        yield from found
        i += used


def _at(words: list[str], i: int) -> tuple[list[Numeral], int]:
    """The numbers starting at ``words[i]`` and how many words they took (at least one)."""
    word = stripped(words[i])
    if not numeric(word):
        return [], 1
    if not _has_numeric_char(word):
        return _word_number(words, i)
    used = _grouped(words, i)
    if used > 1:  # "5 000 000": thousands written with spaces
        shown = [stripped(w) for w in words[i : i + used]]
        return [_from(" ".join(shown), "".join(shown), percent=False)], used
    follows = stripped(words[i + 1]).lower() if i + 1 < len(words) else ""
    with_next = _with(word, follows)
    return ([with_next], 2) if with_next is not None else (_parts(word), 1)


def _with(word: str, follows: str) -> Numeral | None:
    """The number ``word`` makes with the word after it (``25 %``, ``1.5 million``), if any."""
    if follows == "pp" or follows in PERCENT_WORDS or follows == "%":
        return _from(f"{word} {follows}", word, percent=True)
    if follows in RATIO_WORDS:
        return Unreadable(f"{word} {follows}")
    if follows in SCALES:  # "1.5 million"
        read = _from(f"{word} {follows}", word, percent=False)
        if isinstance(read, Written):
            read = Written(read.text, read.value * SCALES[follows], 0, False)
        return read
    return None


def _parts(word: str) -> list[Numeral]:
    """A word holding one number, or several joined by a separator, else unreadable."""
    single = _read(word)
    if single is not None:
        return [single]
    pieces = [word]
    for separator in _SEPARATORS:
        pieces = [p for piece in pieces for p in piece.split(separator)]
    if len(pieces) == 1:
        return [Unreadable(word)]
    found: list[Numeral] = []
    for piece in map(stripped, pieces):
        if not numeric(piece):
            continue
        read = _read(piece)
        if read is None:
            return [Unreadable(word)]
        found.append(read)
    return found


def _read(word: str) -> Written | None:
    """A plain decimal, maybe a percent (``25%``, ``0.5pp``), or None."""
    body, percent = word, False
    if body.endswith("%"):
        body, percent = body[:-1], True
    elif body.endswith("pp") and body[:-2][-1:].isdigit():
        body, percent = body[:-2], True
    read = _from(word, body, percent=percent)
    return read if isinstance(read, Written) else None


def _from(text: str, body: str, *, percent: bool) -> Numeral:
    """``body`` read as a plain decimal, shown as ``text``; unreadable if it is not one."""
    if body.endswith("%"):
        body, percent = body[:-1], True
    if not _DECIMAL.fullmatch(body):
        return Unreadable(text)
    try:
        value = Decimal(body.replace(",", "").replace(MINUS, "-"))
    except InvalidOperation:
        return Unreadable(text)
    if not value.is_finite():
        return Unreadable(text)
    exponent = value.as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return Written(text, value, decimals, percent)


def _grouped(words: list[str], i: int) -> int:
    """How many words form one number with spaced thousands from ``words[i]`` (1: none)."""
    head = words[i].lstrip(_OPENING).lstrip("-+" + MINUS)
    if not (head.isascii() and head.isdigit() and len(head) <= 3):
        return 1
    used = 1
    while i + used < len(words):
        word = words[i + used]
        group = word.rstrip(_CLOSING)
        if not (group.isascii() and group.isdigit() and len(group) == 3):
            break
        used += 1
        if group != word:  # punctuation after it ends the number
            break
    return used


def _has_numeric_char(word: str) -> bool:
    return any(unicodedata.numeric(c, None) is not None for c in word)


def _word_number(words: list[str], i: int) -> tuple[list[Numeral], int]:
    """ "forty thousand", "one hundred and five": read; "twice", "half", "one-off": unreadable."""
    used, parts = 0, list[str]()
    while i + used < len(words):
        raw = words[i + used]
        word = stripped(raw).lower()
        if word == "and" and parts and raw == word:
            used += 1
            continue
        pieces = word.split("-")
        if not all(p in _WORDS for p in pieces):
            break
        parts += pieces
        used += 1
        if word != raw.lower():  # punctuation after it ends the number
            break
    while used and words[i + used - 1] == "and":  # a trailing "and" is not part of it
        used -= 1
    if not parts:  # a number word glued to another word
        return [Unreadable(stripped(words[i]))], 1
    text = stripped(" ".join(words[i : i + used]))
    if any(p in VAGUE for p in parts):
        return [Unreadable(text)], used
    follows = stripped(words[i + used]).lower() if i + used < len(words) else ""
    if follows in RATIO_WORDS:
        return [Unreadable(f"{text} {follows}")], used + 1
    percent = follows in PERCENT_WORDS or follows == "%"
    value = Decimal(_word_value(parts))
    return [Written(text, value, 0, percent)], used + int(percent)


def _word_value(parts: list[str]) -> int:
    total = current = 0
    for part in parts:
        if part in CARDINALS:
            current += CARDINALS[part]
        elif part == "hundred":
            current = max(current, 1) * 100
        else:
            total += max(current, 1) * SCALES[part]
            current = 0
    return total + current
