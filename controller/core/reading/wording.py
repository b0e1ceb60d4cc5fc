"""How every output names a stage and writes a guardrail's numbers: one wording, one place.

Stages are 0-based indexes inside the controller and on the wire (the ``stage`` field of
decisions, alerts and flag states), but people count from one: every text says "stage 3/5
(25%)" for index 2 of a five-stage plan at 25%, whether it is an alert's summary, a decision
line, ``rolloutctl status``, the demo's screens or a report. Messages carry the same
position as numbers under :data:`AT_STAGE`, so a reader of the JSON never guesses the
counting. Pure; the readers of JSON are defensive (a message may lack or bend a field).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from controller.core.reading.intervals import decimals_for, rounded_interval, signed
from controller.core.rollouts import Rollout, conversion_of, metric_of
from controller.core.wire import FailureSeen, JsonObject, RolloutEvidence, read_evidence

AT_STAGE = "at_stage"
"""The key, in a decision's evidence or an alert's details, of the stage it was taken at."""


def percent_text(value: float) -> str:
    """A share of units as people write it: ``25%``, ``0.5%``, ``100%``."""
    return f"{value:g}%"


def stage_label(index: int, stages: int | None = None, percent: float | None = None) -> str:
    """``stage 3/5 (25%)`` for index 2 of 5 stages at 25%; the parts unknown are left out."""
    number = f"stage {index + 1}"
    if stages:
        number += f"/{stages}"
    return f"{number} ({percent_text(percent)})" if percent is not None else number


def stage_position(rollout: Rollout) -> JsonObject:
    """Where ``rollout`` stands in its plan, as numbers and in words, for messages."""
    stages = len(rollout.plan.stages)
    percent = rollout.plan.stages[rollout.stage].percent
    return {
        "index": rollout.stage,
        "number": rollout.stage + 1,
        "of": stages,
        "percent": percent,
        "label": stage_label(rollout.stage, stages, percent),
    }


def at_stage(rollout: Rollout | None) -> JsonObject:
    """``{"at_stage": position}`` for a message about ``rollout``; empty without one."""
    return {AT_STAGE: stage_position(rollout)} if rollout is not None else {}


def rollout_stage(rollout: Rollout) -> str:
    """The label of ``rollout``'s current stage, and its watch when in one.

    In the watch after the last stage the flag serves less than the stage's
    percent (the holdback stays on control), so the watch is said, with what
    is served: "stage 5/5 (100%), in its watch (99% served)".
    """
    label = str(stage_position(rollout)["label"])
    if rollout.watching and rollout.phase.active:
        return f"{label}, in its watch ({percent_text(rollout.percent)} served)"
    return label


def label_of(message: Mapping[str, object]) -> str | None:
    """The stage a message or a rollout's status is at, in words; None when it names none.

    Reads the position under :data:`AT_STAGE` (at the top, as ``/rollouts``
    serves it, or in a decision's ``evidence`` or an alert's ``details``), else
    the bare 0-based ``stage`` (and ``stages``) that every version has.
    """
    for inner in (message, message.get("evidence"), message.get("details")):
        position = inner.get(AT_STAGE) if isinstance(inner, dict) else None
        if isinstance(position, dict) and (label := _label_from(position)) is not None:
            return label
    return position_label(message.get("stage"), message.get("stages"), None)


def decided_at(message: Mapping[str, object]) -> str:
    """Where a decision was taken, and where it left the rollout if elsewhere.

    ``at stage 2/5 (5%) (now stage 3/5)`` for an advance, ``at stage 3/5 (25%)``
    for a rollback; empty when the message names no stage.
    """
    label = label_of(message)
    if label is None:
        return ""
    evidence = read_evidence(message.get("kind"), message.get("evidence"))
    position = evidence.at_stage if isinstance(evidence, RolloutEvidence) else None
    if position is None or message.get("stage") == position.index:
        return f"at {label}"
    now = position_label(message.get("stage"), position.of, None)
    return f"at {label} (now {now})" if now else f"at {label}"


def position_label(index: Any, stages: Any, percent: Any) -> str | None:
    """:func:`stage_label` of values read from JSON; None unless ``index`` is a sane index."""
    if not _count(index):
        return None
    total = stages if _count(stages) and stages > 0 else None
    share = float(percent) if _share(percent) else None
    return stage_label(index, total, share)


def _label_from(position: Mapping[str, object]) -> str | None:
    return position_label(position.get("index"), position.get("of"), position.get("percent"))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10_000


def _share(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 100
    )


# -- numbers: one convention for every text a person reads ------------------------------

RATE_METRICS = frozenset({"error_rate", "conversion_rate", "latency_exceedance"})
"""Metrics that are shares of events: Δ in percentage points, with the relative lift in %."""
METRIC_NAMES = {
    "error_rate": "error rate",
    "conversion_rate": "conversion rate",
    "latency_exceedance": "share of slow requests",
    "latency_p95": "p95 latency",
    "latency_p99": "p99 latency",
    "conversion_value": "conversion value",
    "crash_count": "crashes per exposure",
    "exception_count": "exceptions per exposure",
}
"""Each guardrail's metric as people say it."""


def metric_name(metric: str) -> str:
    """``error_rate`` as people say it: ``error rate``; an unknown metric keeps its name.

    A guardrail's key that names a conversion (``conversion_rate:checkout_completed``)
    reads ``conversion rate of checkout_completed``.
    """
    base, conversion = metric_of(metric), conversion_of(metric)
    if conversion is None or base not in METRIC_NAMES:
        return METRIC_NAMES.get(metric, metric[:64])
    return f"{METRIC_NAMES[base]} of {conversion[:64]}"


def metric_unit(metric: str) -> str:
    """The unit a metric's Δ is written in: ``pp``, ``ms``, or none (a value in its own unit)."""
    metric = metric_of(metric)
    if metric in RATE_METRICS:
        return "pp"
    return "ms" if metric.startswith("latency") else ""


def quantity_text(
    metric: str,
    delta: float,
    lower: float,
    upper: float,
    baseline: float | None = None,
    *,
    named: bool = True,
    limit: float | None = None,
) -> str:
    """A guardrail's Δ (treatment minus control) with its interval, as every text writes it.

    Rates in percentage points with the relative lift against the control's
    ``baseline`` (a share): ``error rate +3.6 pp [+0.5, +6.7] (+72%)``;
    latency in ms: ``p95 latency +212 ms [+40, +380]``; a conversion value in
    its own unit. Values are as the gate holds them (shares as fractions). With
    ``limit``, the tolerance's signed edge (:func:`harm_edge`), the numbers keep
    their side of it (:func:`~controller.core.reading.intervals.rounded_interval`):
    ``+7.0 pp [+0.4, +12.9]`` against a tolerance of 0, never ``[0, +13]``. NaN
    and infinity are never printed: an estimate that is not a number is "no
    estimate", an infinite bound "not yet bounded". ``named=False`` leaves out
    the metric's name (for a table whose row names it).
    """
    name, unit = metric_name(metric), metric_unit(metric)
    if not math.isfinite(delta):
        return f"{name}: no estimate yet" if named else "no estimate yet"
    scale = 100.0 if unit == "pp" else 1.0
    edge = None if limit is None else limit * scale
    shown = rounded_interval(delta * scale, lower * scale, upper * scale, edge)
    text = f"{shown.delta}{' ' + unit if unit else ''}"
    if shown.lower and shown.upper:
        text += f" [{shown.lower}, {shown.upper}]"
    else:
        text += " (interval not yet bounded)"
    lift = relative_lift(delta, baseline) if unit == "pp" else None
    text = f"{text} ({lift})" if lift else text
    return f"{name} {text}" if named else text


def harm_edge(tolerance: float | None, direction: str | None) -> float | None:
    """Where harm begins, signed: ``+tolerance`` when lower is better, ``-tolerance`` when
    higher is better; None without a usable tolerance."""
    if tolerance is None or not math.isfinite(tolerance):
        return None
    return -abs(tolerance) if direction == "higher_is_better" else abs(tolerance)


def limit_text(
    metric: str, limit: float, delta: float, lower: float, upper: float, *, sign: bool = False
) -> str:
    """The tolerance beside an interval, rounded as :func:`quantity_text` rounds that interval
    against it, so the two read in the same digits: ``2.00 pp`` beside ``[+2.04, +12.90]``;
    unsigned (``2.0 pp``) unless ``sign``."""
    unit = metric_unit(metric)
    scale = 100.0 if unit == "pp" else 1.0
    if not math.isfinite(limit * scale):
        return "unbounded"
    shown, low, high = (v * scale if math.isfinite(v) else math.nan for v in (delta, lower, upper))
    number = rounded_interval(shown, low, high, limit * scale).limit
    number = number if sign else number.lstrip("+-")
    return f"{number} {unit}" if unit else number


def amount_text(metric: str, value: float) -> str:
    """A size in the metric's unit, unsigned: a tolerance of ``2.0 pp``, ``35 ms``, ``1.5``."""
    unit = metric_unit(metric)
    size = abs(value) * (100.0 if unit == "pp" else 1.0)
    if not math.isfinite(size):
        return "unbounded"
    number = signed(size, decimals_for(size)).lstrip("+")
    return f"{number} {unit}" if unit else number


def ms_text(value: float | None) -> str:
    """A latency as people read it, to three significant digits below 100 ms:
    ``0.42 ms``, ``21.0 ms``, ``1,204 ms``; ``-`` when there is none."""
    if value is None or not math.isfinite(value) or value < 0:
        return "-"
    places = 2 if value < 1 else 1 if value < 100 else 0
    return f"{value:,.{places}f} ms"


def relative_lift(delta: float, baseline: float | None) -> str | None:
    """Δ against the control's value in %: ``+72%``; None without a usable baseline."""
    if baseline is None or not math.isfinite(baseline) or baseline <= 0:
        return None
    lift = 100.0 * delta / baseline
    if not math.isfinite(lift):
        return None
    return f"{signed(lift, decimals_for(abs(lift)))}%"


def guardrail_text(metric: str, test: Any, arms: Any = None) -> str:
    """:func:`quantity_text` of a served test (a decision's ``evidence.guardrails[m]``),
    rounded against its tolerance.

    Read defensively (infinities arrive as ``"inf"``); the relative lift of an
    error or conversion rate comes from the control's counts in ``arms``.
    """
    if not isinstance(test, dict):
        return f"{metric_name(metric)}: too few events to test yet"
    delta, lower, upper, tolerance = (
        _served(test.get(k)) for k in ("delta", "lower", "upper", "tolerance")
    )
    direction = test.get("direction")
    limit = harm_edge(tolerance, direction if isinstance(direction, str) else None)
    return quantity_text(metric, delta, lower, upper, control_rate(metric, arms), limit=limit)


RATE_PARTS = {"error_rate": ("errors", "requests"), "conversion_rate": ("conversions", "exposures")}
"""The rates an arm's counts give: each metric's part and whole."""
NAMED_CONVERSIONS = "named_conversions"
"""An arm's counts of the conversions its plan's guardrails name, by name (the gate's)."""


def rate_counts(metric: str, counts: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """The part and whole of ``metric``'s rate in one arm's ``counts``; None for other metrics.

    A guardrail's key that names a conversion takes its part from the arm's
    ``named_conversions``.
    """
    base, conversion = metric_of(metric), conversion_of(metric)
    if base not in RATE_PARTS:
        return None
    part, whole = RATE_PARTS[base]
    if conversion is None:
        return counts.get(part), counts.get(whole)
    named = counts.get(NAMED_CONVERSIONS)
    return (named.get(conversion) if isinstance(named, Mapping) else None), counts.get(whole)


def control_rate(metric: str, arms: Any) -> float | None:
    """The control arm's error or conversion rate from a decision's ``arms`` counts."""
    control = arms.get("control") if isinstance(arms, dict) else None
    counts = rate_counts(metric, control) if isinstance(control, dict) else None
    if counts is None:
        return None
    part, whole = (_served(value) for value in counts)
    return part / whole if math.isfinite(part) and math.isfinite(whole) and whole > 0 else None


def _served(value: Any) -> float:
    """A number from JSON; ``"inf"``/``"-inf"`` as infinities, NaN for anything else."""
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, int | float):
        return float(value)
    return float(value) if value in ("inf", "-inf") else math.nan


def failure_text(seen: FailureSeen) -> str:
    """A failure by its fingerprint as people read it: ``new in treatment:
    `KeyError in cart.py:price` (0.41% of treatment's exposures, none in control); example:
    `KeyError: 'cart_id'``, new once its test regressed with none in control, else its name
    and its shares. Its name and example are the app's text, quoted as data."""
    name, shares = _quoted(seen.name), failure_shares(seen)
    # "New" only once the test says so: early in a stage a few failures may fall in one arm.
    new = seen.control == 0 and seen.regressed
    said = f"new in treatment: {name} ({shares})" if new else f"{name}: {shares}"
    return f"{said}; example: {_quoted(seen.example)}" if seen.example else said


def failure_shares(seen: FailureSeen) -> str:
    """How often a failure came in each arm: ``0.41% of treatment's exposures, none in
    control`` or ``... against 0.10% of control's``."""
    shares = f"{_share_text(seen.treatment_rate)} of treatment's exposures"
    if seen.control == 0:
        return f"{shares}, none in control"
    return f"{shares} against {_share_text(seen.control_rate)} of control's"


def _quoted(text: object) -> str:
    """The app's text between backticks, any of its own made quotes, on one line."""
    return "`" + " ".join(str(text or "").replace("`", "'").split()) + "`"


def _share_text(rate: float) -> str:
    return f"{rate * 100:.2g}%" if rate < 0.001 else f"{rate * 100:.2f}%"
