"""Durations in plans, written the way people write them: ``10m``, ``1h30m``, ``PT10M``.

A plan's durations are read from YAML a person wrote or from a command's
JSON. Besides what pydantic reads itself (ISO 8601 such as ``PT10M`` or
``P1D``, a number of seconds, ``HH:MM:SS``), :func:`duration` reads the short
form ``30s``, ``10m``, ``2h``, ``1d`` and their sums (``1h30m``), and seconds
written as text (``"600"``). Anything
else is refused with one sentence in the plan's own terms, naming both forms,
rather than the parser's wording about the ISO format's parts; the value is
not echoed (it may come from a hostile command). :func:`countdown_text` writes
the time left to something the other way round, for people. Pure.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

from pydantic import BeforeValidator, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

SHORT = re.compile(r"^(?:\d{1,9}(?:\.\d{1,6})?[dhms])+$")
SECONDS = re.compile(r"^\d{1,9}(?:\.\d{1,6})?$")
_PART = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)([dhms])")
_UNIT = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
MAX_TEXT = 64
"""Longer text is no duration anyone meant."""
HOW = "write it as 30s, 10m, 1h30m, 2d, or ISO 8601 such as PT10M (P1D for a day)"
"""How to write a duration, for an error message."""

_PYDANTIC = TypeAdapter(timedelta)


def duration(value: Any) -> Any:
    """``value`` as a :class:`timedelta` when it is text; anything else is left to pydantic.

    Raises a pydantic error (``duration``) for text that is no duration in any form.
    """
    if not isinstance(value, str):
        return value
    text = value.strip().lower().replace(" ", "")
    if len(text) > MAX_TEXT:
        raise PydanticCustomError("duration", f"not a duration: {HOW}")
    try:
        if SECONDS.match(text):
            return timedelta(seconds=float(text))
        if SHORT.match(text):
            parts = _PART.findall(text)
            return sum((timedelta(**{_UNIT[u]: float(n)}) for n, u in parts), timedelta(0))
        return _PYDANTIC.validate_python(value.strip())
    except (ValidationError, OverflowError):  # past what a timedelta holds, or no form at all
        raise PydanticCustomError("duration", f"not a duration: {HOW}") from None


ReadableDuration = BeforeValidator(duration)
"""Annotate a :class:`timedelta` field with it to read the short form (``10m``) too."""


def countdown_text(seconds: float) -> str:
    """The time left, as people read a countdown: ``45 s``, ``2 min 30 s``, ``1 h 5 min``,
    ``2 d 3 h``; two units at most, rounded up, since a countdown that says less than is
    left promises a move that does not come. Nothing left (or no finite number) is ``0 s``."""
    left = math.ceil(seconds) if math.isfinite(seconds) and seconds > 0 else 0
    if left < 60:
        return f"{left} s"
    if left < 3600:
        return _two(*divmod(left, 60), "min", "s")
    minutes = math.ceil(left / 60)
    if minutes < 24 * 60:
        return _two(*divmod(minutes, 60), "h", "min")
    return _two(*divmod(math.ceil(left / 3600), 24), "d", "h")


def _two(big: int, small: int, big_unit: str, small_unit: str) -> str:
    return f"{big} {big_unit} {small} {small_unit}" if small else f"{big} {big_unit}"
