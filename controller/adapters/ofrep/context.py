"""An OFREP request's body and evaluation context: decoded, bounded and checked.

A body that is not JSON, or no JSON object, is OFREP's ``PARSE_ERROR``. A
body that is JSON but holds what no evaluation can use is the context's
fault, ``INVALID_CONTEXT``: a string that is not valid Unicode (JSON lets
``"\\ud800"``, a lone surrogate, be written; it has no UTF-8 form, so it can
be neither hashed nor compared as text) and a number beyond the range of a
double (``1e400``; rules compare numbers as IEEE-754 binary64). orjson
refuses both, so a body it refuses is read again by the standard library
(bounded: the body is at most 16 KiB), reading numbers as orjson does, to
tell the two apart. A context
nested deeper than :data:`MAX_CONTEXT_DEPTH` or with more than
:data:`MAX_CONTEXT_VALUES` values is ``INVALID_CONTEXT`` too.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import orjson
from aiohttp import web

from controller.core.common import ControllerError
from controller.core.wire import ErrorCode, key_problem

MAX_CONTEXT_DEPTH = 8
"""How deeply a context's objects and arrays may nest (the context itself is level 1)."""
MAX_CONTEXT_VALUES = 1000
"""How many values (objects, arrays and scalars) a context may hold."""


class OfrepFailure(ControllerError):
    """A request answered with an OFREP error: the status, the code and the reason."""

    def __init__(self, status: int, code: ErrorCode, details: str, *, close: bool = False) -> None:
        super().__init__(details)
        self.status, self.code, self.details, self.close = status, code, details, close
        self.retry_after: int | None = None

    def response(self, key: str | None) -> web.Response:
        body: dict[str, Any] = {"errorCode": self.code.value, "errorDetails": self.details}
        response = web.Response(
            body=orjson.dumps(body if key is None else {"key": key, **body}),
            status=self.status,
            content_type="application/json",
        )
        if self.retry_after is not None:
            response.headers["Retry-After"] = str(self.retry_after)
        if self.close:
            response.force_close()
        return response


def decoded(raw: bytes) -> object:
    """The JSON of a body, numbers as orjson reads them; ``PARSE_ERROR`` if it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        refused = exc
    try:
        return json.loads(raw, parse_constant=_not_json, parse_int=_integer)
    except (json.JSONDecodeError, RecursionError, UnicodeDecodeError):
        reason = f"the body is not JSON: {str(refused)[:200]}"
        raise OfrepFailure(400, ErrorCode.PARSE_ERROR, reason) from refused


def _not_json(constant: str) -> NoReturn:
    """``NaN`` and ``Infinity`` are Python's extensions, not JSON."""
    raise json.JSONDecodeError(f"{constant} is not JSON", constant, 0)


def _integer(text: str) -> int | float:
    """An integer as orjson reads one: past 64 bits, a double (maybe infinite, refused later)."""
    if len(text) <= _INTEGER_DIGITS:
        number = int(text)
        if -(2**63) <= number < 2**64:
            return number
    return float(text)


_INTEGER_DIGITS = 21
"""Digits and sign of the longest integer orjson keeps as one (``-9223372036854775808``)."""


def context_of(body: object) -> tuple[object, dict[str, Any]]:
    """The targeting key (as sent; None when absent) and the other attributes of the context."""
    if not isinstance(body, dict):
        raise OfrepFailure(400, ErrorCode.PARSE_ERROR, "the body must be a JSON object")
    context = body.get("context")
    if context is None:
        return None, {}
    if not isinstance(context, dict):
        kind = type(context).__name__
        raise OfrepFailure(
            400, ErrorCode.INVALID_CONTEXT, f"the context must be an object, not {kind}"
        )
    bounded(context)
    attributes = {k: v for k, v in context.items() if k != "targetingKey"}
    return context.get("targetingKey"), attributes


def bounded(context: dict[str, Any]) -> None:
    """Refuse a context nested too deeply, with too many values, or holding a value that is no
    valid Unicode or no double."""
    level: list[object] = [context]
    depth = values = 0
    while level:
        depth += 1
        values += len(level)
        if depth > MAX_CONTEXT_DEPTH:
            _invalid(f"the context is nested deeper than {MAX_CONTEXT_DEPTH} levels")
        if values > MAX_CONTEXT_VALUES:
            _invalid(f"the context holds more than {MAX_CONTEXT_VALUES} values")
        below: list[object] = []
        for node in level:
            if isinstance(node, dict):
                below.extend(node.values())
                _check_scalars(node)
            elif isinstance(node, list):
                below.extend(node)
                _check_scalars(node)
        level = below


def _check_scalars(node: dict[str, Any] | list[Any]) -> None:
    """Refuse a key or a value that is no valid Unicode or no double."""
    for item in (*node, *node.values()) if isinstance(node, dict) else node:
        if isinstance(item, str) and not _is_unicode(item):
            _invalid(f"the context holds a string that is not valid Unicode: {ascii(item)[:60]}")
        if isinstance(item, float | int) and not isinstance(item, bool) and _beyond_double(item):
            _invalid(_BEYOND_DOUBLE)


_BEYOND_DOUBLE = "the context holds a number beyond the range of a double (IEEE-754 binary64)"


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _beyond_double(number: float) -> bool:
    return not -sys.float_info.max <= number <= sys.float_info.max


def _invalid(reason: str) -> NoReturn:
    raise OfrepFailure(400, ErrorCode.INVALID_CONTEXT, reason)


def checked_unit(unit: object) -> str | None:
    """``unit`` (None when the context has none: each flag that buckets says so alone);
    for a key that cannot be a unit, the context's error, for all flags."""
    if isinstance(unit, str) and not unit:
        return None
    if problem := key_problem(unit):
        raise OfrepFailure(400, *problem)
    assert unit is None or isinstance(unit, str)  # key_problem refuses anything else
    return unit
