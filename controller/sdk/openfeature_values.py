"""An evaluation as each of OpenFeature's value types, for the provider's typed resolvers.

Each reader answers the value the evaluation serves as its type, or None
when the flag serves another type: the provider then answers the caller's
default with ``TYPE_MISMATCH``. A flag without declared values serves a
boolean, and its arm's name as a string; whole numbers are integers and
floats, fractions floats only. :func:`resolution` and :func:`resolution_error`
are the provider's answers, served and failed.
"""

from __future__ import annotations

from typing import Any, TypeVar

from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason

from controller.core.wire import Evaluation, FlagState
from controller.core.wire import Reason as EvalReason

T = TypeVar("T")


def resolution_error(default: T, code: ErrorCode, message: str) -> FlagResolutionDetails[T]:
    """OpenFeature's answer for an evaluation that failed: the caller's default, with the code."""
    return FlagResolutionDetails(
        value=default, reason=Reason.ERROR, error_code=code, error_message=message
    )


def resolution(found: Evaluation, state: FlagState | None, value: T) -> FlagResolutionDetails[T]:
    """OpenFeature's answer for an evaluation that served ``value``: its reason and variant,
    with the flag's version, percent (0 where it serves control to everyone), status and the
    unit's cohort in the metadata."""
    disabled = found.reason is EvalReason.DISABLED
    metadata: dict[str, Any] = {
        "version": found.version,
        "percent": 0.0 if disabled or state is None else float(state.percent),
        "status": state.status.value if state is not None else "",
    }
    if found.cohort is not None:
        metadata["cohort"] = found.cohort.value
    return FlagResolutionDetails(
        value=value,
        reason=open_reason(found.reason),
        variant=found.variant,
        flag_metadata=metadata,
    )


def open_reason(reason: EvalReason) -> Reason | str:
    """OpenFeature's reason for ours; as a string where it names none (``PREREQUISITE_FAILED``:
    OpenFeature leaves reasons open to providers)."""
    try:
        return Reason(reason.value)
    except ValueError:
        return reason.value


def boolean_value(found: Evaluation) -> bool | None:
    """A boolean flag's value."""
    return bool(found.value) if found.value_type == "boolean" else None


def string_value(found: Evaluation) -> str | None:
    """The declared string; a flag without declared values answers its arm's name."""
    if found.values is None:
        return found.variant
    return str(found.value) if found.value_type == "string" else None


def integer_value(found: Evaluation) -> int | None:
    """A number that is whole (``2`` or ``2.0``); a fraction is no integer."""
    value = found.value
    if found.value_type != "number" or not isinstance(value, int | float):
        return None
    return int(value) if float(value).is_integer() else None


def float_value(found: Evaluation) -> float | None:
    """A number, whole or not."""
    return float(found.value) if found.value_type == "number" else None


def object_value(found: Evaluation) -> Any:
    """A declared object."""
    return found.value if found.value_type == "object" else None
