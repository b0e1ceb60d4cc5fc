"""The small rules of attribution: event ids, versions, units, a span's outcome, a value.

Each is a pure function of its arguments, so :mod:`.translating` reads as the
flow from evaluations to events and these as the rules that flow follows.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from hashlib import blake2b
from typing import Final, TypeVar

from controller.core.common import MAX_CONVERSION_VALUE, MAX_EPOCH_MS, MAX_LATENCY_MS
from controller.core.telemetry.evaluations import Evaluation
from controller.core.telemetry.fingerprints import http_fingerprint
from controller.core.telemetry.joining import Node
from controller.core.telemetry.signals import (
    SPAN_KIND_SERVER,
    STATUS_ERROR,
    Attributes,
    RefusalReason,
    Refused,
    Scalar,
    Span,
)

MAX_VERSION: Final = 2**31 - 1
MAX_UNIT_CHARS: Final = 256
HTTP_STATUS: Final = "http.response.status_code"
OLD_HTTP_STATUS: Final = "http.status_code"
HTTP_ROUTE: Final = "http.route"
HTTP_METHOD: Final = "http.request.method"
OLD_HTTP_METHOD: Final = "http.method"
FAILED_STATUS_MIN: Final = 400
"""The least HTTP status a request is named by (:func:`request_failure`)."""
_METHODS: Final = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"})
_MAX_WHOLE: Final = float(2**63)
"""The largest double read as an HTTP status (an int attribute's range)."""
_MAX_DIGITS: Final = 10
_NS_PER_MS: Final = 1_000_000
_MAX_LATENCY: Final = float(MAX_LATENCY_MS)
_Arm = TypeVar("_Arm", bound=str)
_SPAN_HASH: Final = blake2b(digest_size=16)
"""Never updated, only copied: a copy costs less than a new hasher's parameters (about half
the time of ``blake2b(data, digest_size=16)``, CPython 3.11)."""


def arm_of(evaluation: Evaluation, arms: Mapping[str, _Arm]) -> _Arm | tuple[RefusalReason, str]:
    """The arm the evaluation's variant stands for, else why it counts for none.

    A provider that failed served the app's own default, which is no arm
    whatever its value: that is said apart from a variant the plan does not map.
    """
    flag = evaluation.flag
    if evaluation.failed:
        why = (evaluation.error_type or "error")[:64]
        return (
            "evaluation_error",
            f"{flag}: the provider failed ({why!r}); the app served its default",
        )
    arm = arms.get(evaluation.variant) if evaluation.variant is not None else None
    if arm is None:
        return (
            "unknown_variant",
            f"{flag}: variant {(evaluation.variant or '')[:128]!r} names no arm",
        )
    return arm


def event_id(kind: str, trace_id: str, span_id: str, flag: str) -> str:
    """The id of the event of ``kind`` a span (or record) gives for ``flag``: the same every time.

    ``kind`` is ``x`` (exposure), ``r`` (request) or ``c:<name>`` (conversion).
    A re-sent export, a Collector's re-delivery or a replay after a crash
    gives the same ids, and ingest counts an id once.
    """
    return id_of(kind, span_digest(trace_id, span_id, flag))


def span_digest(trace_id: str, span_id: str, flag: str) -> str:
    """What the ids of the events a span (or record) gives for ``flag`` derive from: each
    kind's id is :func:`id_of` it, so an exposure and its request outcome on one span hash
    once."""
    hashed = _SPAN_HASH.copy()  # the same digest as blake2b(..., digest_size=16), made faster
    hashed.update(f"{trace_id}|{span_id}|{flag}".encode())
    return hashed.hexdigest()


def id_of(kind: str, digest: str) -> str:
    """The id of the event of ``kind`` whose span, trace and flag gave ``digest``."""
    return f"otlp-{kind}-{digest}"


def version_of(text: str) -> int | None:
    """``feature_flag.version`` as a flag version (0 to 2³¹-1), or None."""
    # ASCII digits, 1 to 10 of them (what [0-9]{1,10} matches, without a regex's cost).
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_DIGITS:
        return None
    value = int(text)
    return value if value <= MAX_VERSION else None


def version_at(
    timeline: tuple[tuple[int, int], ...], current: int, at_ms: int, guard_ms: int
) -> int | None:
    """The flag version in force at ``at_ms``, or None within ``guard_ms`` of a change.

    ``timeline`` holds (version, since_ms) in ascending time; without one the
    ``current`` version is in force. Before the first entry no version of the
    rollout was served, so nothing is attributed either.
    """
    if not timeline:
        return current
    after = bisect_right(timeline, at_ms, key=lambda entry: entry[1])
    if after < len(timeline) and timeline[after][1] - at_ms < guard_ms:
        return None
    if after == 0 or at_ms - timeline[after - 1][1] < guard_ms:
        return None
    return timeline[after - 1][0]


def unit_text(value: Scalar | None) -> str | None:
    """An attribute as a unit id (text or an integer, 1 to 256 characters), or None."""
    if type(value) is str:
        return value if 0 < len(value) <= MAX_UNIT_CHARS else None
    if type(value) is int:
        return str(value)
    return None


def unit_from(name: str | None, *places: Attributes) -> str | None:
    """The unit the attribute ``name`` gives in the first of ``places`` that has one."""
    if name is None:
        return None
    for attributes in places:
        unit = unit_text(attributes.get(name))
        if unit is not None:
            return unit
    return None


def http_status(attributes: Attributes) -> int | None:
    """The HTTP response status of a span (either semantic convention), or None.

    The semantic conventions make it an int. A double that is a whole number
    (``500.0``, as an SDK of a language with one number type may send it) is
    read as that int; anything else (a fractional, infinite or NaN double, a
    string, a boolean) says nothing trustworthy of the request's outcome, and
    raises :class:`Refused` (``malformed``): counting it as a success would hide
    a failure, and reading ``"500"`` would accept what the conventions do not.
    """
    key, value = HTTP_STATUS, attributes.get(HTTP_STATUS)
    if value is None:
        key, value = OLD_HTTP_STATUS, attributes.get(OLD_HTTP_STATUS)
        if value is None:
            return None
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer() and abs(value) < _MAX_WHOLE:
        return int(value)
    raise Refused("malformed", _status_fault(key, value))


def _status_fault(key: str, value: Scalar) -> str:
    """Why a request's HTTP status is not read: what it is, and what it should be."""
    if type(value) is str:
        return (
            f"{key} {value[:16]!r} is a string; the semantic conventions make it an int "
            "(a Collector's Zipkin receiver converts tags with parse_string_tags)"
        )
    if type(value) is bool:
        return f"{key} {value} is a boolean; the semantic conventions make it an int"
    return f"{key} {value!r} is not a whole number; the semantic conventions make it an int"


def request_failure(attributes: Attributes, status: int | None) -> str | None:
    """A request's name where its HTTP status is a client's or a server's error (400 to 599):
    its status class, ``http.request.method`` (else the older ``http.method``; ``_OTHER``
    names none) and ``http.route``, the template the server matched (``5xx GET /cart/{id}``),
    a pattern's leading method left out (``GET /cart/{id}``, as Go's ServeMux writes one).
    None for another status, and for a request with no route: its URL path holds ids and
    names, and no scrub makes it a route."""
    if status is None or status < FAILED_STATUS_MIN:
        return None
    route = attributes.get(HTTP_ROUTE)
    if type(route) is not str:
        return None
    verb, _, rest = route.partition(" ")
    if verb in _METHODS and rest.strip():
        route = rest
    method = attributes.get(HTTP_METHOD) or attributes.get(OLD_HTTP_METHOD)
    found = http_fingerprint(status, route, method if type(method) is str else "")
    return found.title if found is not None and found.where else None


def node_of(span: Span) -> Node:
    """What the join keeps of a span; only a request (SERVER or a root) needs its HTTP status,
    and only a request's is refused (:class:`Refused`) where it cannot be read; a request
    whose status is an error's is named (:func:`request_failure`)."""
    server = span.kind == SPAN_KIND_SERVER
    parent = span.parent_span_id
    status = http_status(span.attributes) if server or not parent else None
    return Node(
        span.span_id,
        parent,
        server,
        span.start_ns,
        span.end_ns,
        span.status_code == STATUS_ERROR,
        status,
        request_failure(span.attributes, status) if status is not None else None,
    )


def is_error(node: Node, error_status_min: int) -> bool:
    status = node.http_status
    return node.failed or (status is not None and status >= error_status_min)


def latency_ms(node: Node) -> float:
    """The span's duration in ms, clamped into the contract's range."""
    ms = (node.end_ns - node.start_ns) / _NS_PER_MS
    if ms <= 0.0:
        return 0.0
    return ms if ms <= _MAX_LATENCY else _MAX_LATENCY


def ts_ms(time_ns: int) -> int:
    """A time in ns as the contract's epoch ms (clamped to its last instant)."""
    ms = time_ns // _NS_PER_MS
    if 0 <= ms <= MAX_EPOCH_MS:
        return ms
    return 0 if ms < 0 else MAX_EPOCH_MS


def conversion_value(value: Scalar | None) -> float | None:
    """A conversion's value: a finite number within the contract's bound, else none."""
    if type(value) is not int and type(value) is not float:
        return None
    number = float(value)
    if not math.isfinite(number) or abs(number) > MAX_CONVERSION_VALUE:
        return None
    return number
