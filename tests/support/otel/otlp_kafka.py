"""The Collector's Kafka topics in tests: records as its exporter writes them, and what they
should count.

Spans come from the real OpenTelemetry SDK (:class:`tests.support.otel.otlp_exports.Recorder`): a
SERVER span per request with its HTTP status, and on it a ``feature_flag.evaluation``
event as OpenFeature's hooks record one (written here with the attributes the Node hooks
and our SDK set, ``feature_flag.version`` included; or by OpenFeature's own Python
``TracingHook``). The records are the exports the OTLP exporter's own encoders make of
them, in the Collector's ``otlp_proto`` or ``otlp_json`` encoding. The reference count
reads the SDK's spans directly, not through the translator: one exposure and one request
outcome per evaluation of a known flag, in the arm its variant names.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from openfeature.evaluation_context import EvaluationContext
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from controller.adapters.redis.aggregates import RedisAggregateStore
from controller.core.stats import FlagAggregates
from tests.support.otel.otlp_exports import Recorder, openfeature_client, traces_json, traces_proto

EVALUATION = "feature_flag.evaluation"


def evaluated_requests(
    recorder: Recorder,
    n: int,
    *,
    flags: Sequence[str],
    version: int,
    seed: int,
    units: int = 500,
    error_rate: float = 0.05,
) -> None:
    """``n`` requests as SERVER spans, each with one evaluation event (arms alternate)."""
    rng = random.Random(seed)
    for i in range(n):
        flag = flags[i % len(flags)]
        status = 500 if rng.random() < error_rate else 200
        with recorder.request(status=status):
            trace.get_current_span().add_event(
                EVALUATION,
                {
                    "feature_flag.key": flag,
                    "feature_flag.result.variant": ("treatment", "control")[(i // 3) % 2],
                    "feature_flag.context.id": f"user-{rng.randrange(units)}",
                    "feature_flag.version": str(version),
                    "feature_flag.provider.name": "rollout-controller",
                },
            )


def hooked_requests(recorder: Recorder, n: int, *, flag: str, variant: str, seed: int) -> None:
    """``n`` requests whose evaluation OpenFeature's own ``TracingHook`` records."""
    rng = random.Random(seed)
    client = openfeature_client({flag: variant})
    for _ in range(n):
        with recorder.request(status=200):
            unit = f"user-{rng.randrange(100)}"
            client.get_boolean_value(flag, False, EvaluationContext(targeting_key=unit))


def exports(spans: Sequence[ReadableSpan], per_record: int, *, json: bool = False) -> list[bytes]:
    """``spans`` cut into exports of ``per_record`` spans, each one record's value."""
    encode = traces_json if json else traces_proto
    return [encode(spans[i : i + per_record]) for i in range(0, len(spans), per_record)]


@dataclass
class Expected:
    """What one (flag, version, arm) should hold."""

    exposures: int = 0
    requests: int = 0
    errors: int = 0
    latency_sum_ms: float = 0.0
    units: set[str] = field(default_factory=set)


def reference(
    spans: Iterable[ReadableSpan], known: dict[str, int]
) -> dict[tuple[str, int, str], Expected]:
    """The counts of ``spans``' evaluations of the ``known`` flags (flag -> version in force)."""
    cells: dict[tuple[str, int, str], Expected] = {}
    for span in spans:
        attributes = span.attributes or {}
        status = attributes.get("http.response.status_code")
        error = span.status.status_code is StatusCode.ERROR or (
            isinstance(status, int) and status >= 500
        )
        for event in span.events:
            values = event.attributes or {}
            flag = str(values.get("feature_flag.key"))
            if event.name != EVALUATION or flag not in known:
                continue
            version = int(str(values.get("feature_flag.version", known[flag])))
            cell = cells.setdefault(
                (flag, version, str(values["feature_flag.result.variant"])), Expected()
            )
            cell.exposures += 1
            cell.requests += 1
            cell.errors += error
            assert span.end_time is not None
            assert span.start_time is not None
            cell.latency_sum_ms += (span.end_time - span.start_time) / 1e6
            unit = values.get("feature_flag.context.id")
            cell.units.add(str(unit) if unit is not None else f"trace:{span.context.trace_id:032x}")
    return cells


def total(cells: dict[tuple[str, int, str], Expected]) -> int:
    """Events the cells count: exposures and request outcomes."""
    return sum(c.exposures + c.requests for c in cells.values())


async def assert_counts(
    store: RedisAggregateStore, cells: dict[tuple[str, int, str], Expected]
) -> None:
    """The aggregates hold exactly ``cells``: counts exact, sums to float error, units to
    HyperLogLog error."""
    by_flag: dict[tuple[str, int], dict[str, Expected]] = {}
    for (flag, version, arm), want in cells.items():
        by_flag.setdefault((flag, version), {})[arm] = want
    for (flag, version), arms in sorted(by_flag.items()):
        got: FlagAggregates = await store.read(flag, {version})
        for arm, agg in (("treatment", got.treatment), ("control", got.control)):
            want = arms.get(arm, Expected())
            where = f"{flag} v{version} {arm}"
            seen = (agg.exposures, agg.requests, agg.errors, agg.latency_count)
            assert seen == (want.exposures, want.requests, want.errors, want.requests), where
            assert abs(agg.latency_sum_ms - want.latency_sum_ms) <= 1e-6 * max(
                1.0, want.latency_sum_ms
            ), where
            assert abs(agg.units - len(want.units)) <= max(2, round(0.03 * len(want.units))), where


def counted(aggregates: Iterable[FlagAggregates]) -> int:
    """Exposures and request outcomes the aggregates hold."""
    return sum(
        arm.exposures + arm.requests for agg in aggregates for arm in (agg.treatment, agg.control)
    )


def refusals(letters: Iterable[object]) -> Counter[str]:
    """Dead letters by their ``rc.reason``."""
    found: Counter[str] = Counter()
    for letter in letters:
        headers = dict(getattr(letter, "headers", ()))
        found[headers["rc.reason"].decode()] += 1
    return found
