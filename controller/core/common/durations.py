"""Durations in plans, written the way people write them: ``10m``, ``1h30m``, ``PT10M``.

A plan's durations are read from YAML a person wrote or from a command's
JSON. Besides what pydantic reads itself (ISO 8601 such as ``PT10M`` or
``P1D``, a number of seconds, ``HH:MM:SS``), :func:`duration` reads the short
form ``30s``, ``10m``, ``2h``, ``1d`` and their sums (``1h30m``), and seconds
written as text (``"600"``). Anything
else is refused with one sentence in the plan's own terms, naming both forms,
rather than the parser's wording about the ISO format's parts; the value is
not echoed (it may come from a hostile command). Pure.
"""

from __future__ import annotations

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
