"""Prometheus' query API answers, read strictly at the edge.

An instant query answers ``{"status": "success", "data": {"resultType":
"vector", "result": [{"metric": {...}, "value": [t, "1.5"]}, ...]}}`` (or a
``scalar``, ``[t, "1.5"]``). Anything else is no answer: a body that is not
that JSON, an error status, a range vector or a string, a native histogram,
more series than allowed, a label set or a value of the wrong type. Each
refusal raises :class:`SourceUnavailable` with a reason a person can act on;
the gate holds on it and shows it. Sample values are decoded as Prometheus
writes them (``"NaN"``, ``"+Inf"`` included): whether a guardrail can use
them is the core's to say (:mod:`controller.core.metrics_source.readings`).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from controller.core.common import ControllerError
from controller.core.metrics_source import Answer, Series

MAX_LABELS = 64
"""Labels one series may carry."""
MAX_LABEL_CHARS = 1024
"""Characters of one label name or value."""


class SourceUnavailable(ControllerError):
    """No usable answer from the metrics server; the message is the reason shown."""

    retriable = True


def decode(body: bytes, *, max_series: int) -> Answer:
    """The answer in ``body``; :class:`SourceUnavailable` for anything else."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise SourceUnavailable("the answer is not JSON") from None
    if not isinstance(document, dict):
        raise SourceUnavailable("the answer is not a JSON object")
    if document.get("status") != "success":
        error = _text(document.get("error"), 300) or "no reason given"
        raise SourceUnavailable(
            f"the query failed: {_text(document.get('errorType'), 40)}: {error}"
        )
    data = document.get("data")
    kind = data.get("resultType") if isinstance(data, dict) else None
    if kind == "scalar":
        return Answer((Series((), *_sample(data.get("result"))),))  # type: ignore[union-attr]
    if kind != "vector":
        raise SourceUnavailable(
            f"a result of type {_text(kind, 40)!r}: an instant vector was meant"
        )
    result = data.get("result")  # type: ignore[union-attr]
    if not isinstance(result, list):
        raise SourceUnavailable("the vector's result is not a list")
    if len(result) > max_series:
        raise SourceUnavailable(f"{len(result)} series, more than the {max_series} allowed")
    return Answer(tuple(_series(item) for item in result))


def _series(item: Any) -> Series:
    if not isinstance(item, dict):
        raise SourceUnavailable("a series that is not an object")
    if "histogram" in item or "histograms" in item:
        raise SourceUnavailable("a native histogram: classic buckets (le) are read")
    labels = item.get("metric", {})
    if not isinstance(labels, dict) or len(labels) > MAX_LABELS:
        raise SourceUnavailable("a series' labels are not a bounded object")
    pairs = []
    for name, value in labels.items():
        if not isinstance(value, str) or max(len(name), len(value)) > MAX_LABEL_CHARS:
            raise SourceUnavailable(f"the label {name[:64]!r} is not a bounded string")
        pairs.append((name, value))
    value, at = _sample(item.get("value"))
    return Series(tuple(sorted(pairs)), value, at)


def _sample(sample: Any) -> tuple[float, float]:
    """A sample ``[timestamp, "value"]``'s value and time; NaN and infinities pass as values
    and any finite time as its time (whether they can be used is the core's to say)."""
    if not (isinstance(sample, list) and len(sample) == 2 and isinstance(sample[1], str)):
        raise SourceUnavailable('a sample is not [time, "value"]')
    at = sample[0]
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise SourceUnavailable("a sample's time is not a number of seconds")
    return _value(sample[1]), float(at)


def _value(text: str) -> float:
    if len(text) > 64:
        raise SourceUnavailable("a sample value longer than a number")
    try:
        value = float(text)
    except ValueError:
        raise SourceUnavailable(f"the sample value {text[:32]!r} is not a number") from None
    return math.nan if math.isnan(value) else value


def _text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""
