"""The typed values of audience rules: semantic versions and instants, parsed by hand.

Both parsers are written out character by character (no regular expressions)
so that a client in another language can follow them exactly, and both return
``None`` for text that is not a value of their kind rather than raising: in a
rule a bad literal is refused with its position, and in a context an
attribute that does not parse makes its condition *unknown* (see
:mod:`controller.core.rules.matching`).

* A **semantic version** follows semver.org 2.0.0 strictly: ``MAJOR.MINOR.PATCH``,
  then optionally ``-`` and dot-separated pre-release identifiers, then
  optionally ``+`` and build identifiers (ignored by comparison). No leading
  ``v``, no leading zeros in numeric identifiers. Its :class:`SemverKey` orders
  versions by semver precedence.
* An **instant** is ``YYYY-MM-DD`` (midnight UTC) or
  ``YYYY-MM-DDTHH:MM:SS[.fraction]`` with ``Z``, ``+HH:MM``, ``-HH:MM`` or no
  offset, which means UTC: a rule must mean the same on every host, so no
  local time zone is ever consulted. It becomes integer nanoseconds since the
  Unix epoch, exact for a fraction of up to 9 digits.
"""

from __future__ import annotations

from datetime import date

MAX_VALUE_CHARS = 256
"""The longest semantic version or instant text that is parsed at all."""

_DIGITS = frozenset("0123456789")
_IDENTIFIER = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_NS = 1_000_000_000

PreRelease = tuple[tuple[int, int | str], ...]
SemverKey = tuple[int, int, int, int, PreRelease]
"""``(major, minor, patch, released, pre)``: tuples compare as semver precedence.

``released`` is 1 without a pre-release and 0 with one, so ``1.0.0-rc.1 <
1.0.0``. Each pre-release identifier is ``(0, number)`` or ``(1, text)``:
numeric identifiers sort before alphanumeric ones, numbers by value, text by
ASCII, and a shorter list that is a prefix of a longer one sorts first.
"""


def _numeric(text: str) -> int | None:
    """A numeric identifier: ASCII digits, no leading zero unless it is ``0``."""
    if not (text.isascii() and text.isdigit()) or (text[0] == "0" and len(text) > 1):
        return None
    return int(text)


def _identifiers(text: str) -> list[str] | None:
    parts = text.split(".")
    if any(not part or not set(part) <= _IDENTIFIER for part in parts):
        return None
    return parts


def semver_key(text: str) -> SemverKey | None:
    """The precedence key of a strict semantic version, or ``None`` if ``text`` is not one."""
    if len(text) > MAX_VALUE_CHARS:
        return None
    core, plus, build = text.partition("+")
    if plus and _identifiers(build) is None:
        return None
    core, dash, pre = core.partition("-")
    numbers = [_numeric(part) for part in core.split(".")]
    if len(numbers) != 3:
        return None
    major, minor, patch = numbers
    if major is None or minor is None or patch is None:
        return None
    if not dash:
        return (major, minor, patch, 1, ())
    key = _pre_release(pre)
    return None if key is None else (major, minor, patch, 0, key)


def _pre_release(text: str) -> PreRelease | None:
    identifiers = _identifiers(text)
    if identifiers is None:
        return None
    key: list[tuple[int, int | str]] = []
    for identifier in identifiers:
        if identifier.isascii() and identifier.isdigit():
            number = _numeric(identifier)
            if number is None:
                return None
            key.append((0, number))
        else:
            key.append((1, identifier))
    return tuple(key)


def _field(text: str, start: int, width: int, low: int, high: int) -> int | None:
    piece = text[start : start + width]
    if len(piece) != width or not (piece.isascii() and piece.isdigit()):
        return None
    value = int(piece)
    return value if low <= value <= high else None


def _days(text: str) -> int | None:
    """Days since 1970-01-01 of ``YYYY-MM-DD`` at the start of ``text``."""
    if len(text) < 10 or text[4] != "-" or text[7] != "-":
        return None
    year, month, day = (
        _field(text, 0, 4, 1, 9999),
        _field(text, 5, 2, 1, 12),
        _field(text, 8, 2, 1, 31),
    )
    if year is None or month is None or day is None:
        return None
    try:
        return date(year, month, day).toordinal() - _EPOCH_ORDINAL
    except ValueError:  # 2023-02-29 and the like
        return None


def _fraction_ns(text: str) -> tuple[int, str] | None:
    """``.digits`` (1 to 9) at the start of ``text`` as nanoseconds, and the rest."""
    if not text.startswith("."):
        return (0, text)
    digits = 0
    while digits < len(text) - 1 and text[1 + digits] in _DIGITS:
        digits += 1
    if not 1 <= digits <= 9:
        return None
    return (int(text[1 : 1 + digits].ljust(9, "0")), text[1 + digits :])


def _offset_seconds(text: str) -> int | None:
    """``""`` or ``Z`` (UTC), or ``+HH:MM`` / ``-HH:MM``, as seconds east of UTC."""
    if text in ("", "Z"):
        return 0
    if len(text) != 6 or text[0] not in "+-" or text[3] != ":":
        return None
    hours, minutes = _field(text, 1, 2, 0, 23), _field(text, 4, 2, 0, 59)
    if hours is None or minutes is None:
        return None
    seconds = hours * 3600 + minutes * 60
    return seconds if text[0] == "+" else -seconds


def instant_ns(text: str) -> int | None:
    """Nanoseconds since the Unix epoch of a date or date-time, or ``None`` if it is not one."""
    if len(text) > MAX_VALUE_CHARS:
        return None
    days = _days(text)
    if days is None:
        return None
    if len(text) == 10:
        return days * 86_400 * _NS
    time = _time_ns(text[10:])
    return None if time is None else days * 86_400 * _NS + time


def _time_ns(text: str) -> int | None:
    """``THH:MM:SS[.fraction][offset]`` as nanoseconds from midnight UTC (may be negative)."""
    if len(text) < 9 or text[0] != "T" or text[3] != ":" or text[6] != ":":
        return None
    hour, minute = _field(text, 1, 2, 0, 23), _field(text, 4, 2, 0, 59)
    second, fraction = _field(text, 7, 2, 0, 59), _fraction_ns(text[9:])
    if hour is None or minute is None or second is None or fraction is None:
        return None
    offset = _offset_seconds(fraction[1])
    if offset is None:
        return None
    return (hour * 3600 + minute * 60 + second - offset) * _NS + fraction[0]
