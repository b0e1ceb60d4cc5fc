"""Flag evaluations on the app's own traces: OpenTelemetry's ``feature_flag.evaluation`` event.

When an app traces with OpenTelemetry, each evaluation the SDK makes is added
to the span that is current where the app evaluated the flag, as the
semantic conventions' evaluation event (the span-event form, as OpenFeature's
OpenTelemetry hooks emit it), so the app's traces show which arm each request
was served. The attributes:

* ``feature_flag.key``: the flag;
* ``feature_flag.result.variant``: the arm (``treatment`` or ``control``);
* ``feature_flag.result.value``: the value served, as JSON text;
* ``feature_flag.result.reason``: OpenFeature's reason, in lower case
  (``split``, ``targeting_match``, ``default``, ``disabled``, ``error``);
* ``feature_flag.context.id``: the unit (the targeting key), when it is one;
* ``feature_flag.provider.name``: ``rollout-controller``;
* ``feature_flag.version``: the flag version the app reports in its events,
  as text, except after an error (an error serves version 0 of no state);
* ``error.type`` (the error code in lower case) and ``error.message`` after
  an error.

``feature_flag.set.id`` is not set: the controller has no flag sets.

OpenTelemetry stays optional and is never imported here. A span can only be
recording if the app loaded ``opentelemetry.trace``, the API every tracer
goes through, so :func:`record` looks that module up in ``sys.modules`` and,
without it, returns at once: apps that do not trace never load OpenTelemetry
for the SDK's sake. With it, an evaluation outside any recording span costs
one ``get_current_span()`` call. Recording never raises into the app.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Protocol

import orjson

from controller.core.wire import Evaluation, unit_problem

log = logging.getLogger("controller.sdk.traces")

EVENT = "feature_flag.evaluation"
"""The semantic conventions' name of a flag evaluation event."""
PROVIDER = "rollout-controller"
"""``feature_flag.provider.name`` of the SDK's evaluations and the OpenFeature provider's."""
TRACE_API = "opentelemetry.trace"
"""The OpenTelemetry module looked up (never imported) to find the current span."""


class Span(Protocol):
    """What :func:`record` uses of an OpenTelemetry span."""

    def is_recording(self) -> bool: ...

    def add_event(self, name: str, attributes: Mapping[str, str]) -> object: ...


def evaluation_attributes(
    flag: str,
    *,
    reason: str,
    value: object = None,
    variant: str | None = None,
    unit: object = None,
    version: int | None = None,
    error: str | None = None,
    message: str = "",
    provider: str = PROVIDER,
) -> dict[str, str]:
    """The event's attributes (see the module's docstring); ``value`` None records none."""
    out = {
        "feature_flag.key": flag,
        "feature_flag.provider.name": provider,
        "feature_flag.result.reason": reason.lower(),
    }
    if variant:
        out["feature_flag.result.variant"] = variant
    if value is not None and (text := json_text(value)) is not None:
        out["feature_flag.result.value"] = text
    if isinstance(unit, str) and unit_problem(unit) is None:
        out["feature_flag.context.id"] = unit
    if error is not None:
        out["error.type"] = error.lower()
        if message:
            out["error.message"] = message
    elif version is not None:
        out["feature_flag.version"] = str(version)
    return out


def of_evaluation(found: Evaluation, unit: object, value: object) -> dict[str, str]:
    """The attributes of one of the SDK's own evaluations, which served ``value``."""
    return evaluation_attributes(
        found.flag,
        reason=found.reason.value,
        value=value,
        variant=found.variant,
        unit=unit,
        version=found.version,
        error=found.error.value if found.error is not None else None,
        message=found.detail,
    )


def json_text(value: object) -> str | None:
    """``value`` as JSON text, or None when it has none (an app's default of its own type)."""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
        return None


def current_span() -> Span | None:
    """The app's current span if it is recording; None without one or without OpenTelemetry."""
    trace = sys.modules.get(TRACE_API)
    if trace is None:
        return None
    span: Span = trace.get_current_span()
    return span if span.is_recording() else None


SERVED: object = object()
"""``record``'s value by default: the value of the arm ``found`` serves."""


def record(found: Evaluation, unit: object, value: object = SERVED) -> bool:
    """Add ``found`` (which served ``value``) to the current span; whether it was added."""
    if TRACE_API not in sys.modules:  # the app does not trace: nothing more to look at
        return False
    served = found.value if value is SERVED else value
    return record_event(lambda: of_evaluation(found, unit, served))


def record_event(attributes: Callable[[], Mapping[str, str]]) -> bool:
    """Add an evaluation event to the current span, if one is recording; whether it was added.

    ``attributes`` is called only then. Never raises.
    """
    try:
        span = current_span()
        if span is None:
            return False
        span.add_event(EVENT, attributes())
    except Exception:  # a tracer's failure must not fail the app's evaluation
        log.debug("flag evaluation not recorded on the current span", exc_info=True)
        return False
    return True
