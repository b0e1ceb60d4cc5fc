"""What an OTLP/HTTP export's answer, dead letters and metrics say of its items."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from controller.adapters.otlp import Signal, Taken
from controller.core.telemetry import Logs, Refusal, Spans, Translated
from controller.core.wire import (
    ConversionIn,
    CrashIn,
    ExceptionIn,
    ExposureIn,
    InEvent,
    RequestIn,
)
from controller.daemon.metrics import Metrics
from controller.ports import DeadLetter

MAX_NAMED_REASONS = 8
"""The most reasons an answer's message names (the most common first)."""
NOT_ERRORS = frozenset({"guard_interval"})
"""Refusal reasons that are no error: not dead-lettered, not in the answer."""
TYPES: dict[type[InEvent], str] = {
    ExposureIn: "exposure",
    RequestIn: "request",
    ConversionIn: "conversion",
    CrashIn: "crash",
    ExceptionIn: "exception",
}


@dataclass(slots=True)
class _Item:
    """What the DLQ's record of a refused item reads: ``rc.source.topic`` names the route."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int = -1
    offset: int = -1
    headers: Sequence[tuple[str, bytes]] = ()


def dead_letter(route: str, client: str, refusal: Refusal) -> DeadLetter:
    """The dead letter of a refused item of ``client``'s export on ``route``."""
    item = _Item(route, client.encode(), _letter(route, client, refusal))
    return DeadLetter(item, refusal.reason, refusal.detail)


def rejected(batch: Spans | Logs, translated: Translated, unfit: list[Refusal]) -> int:
    """The items not counted, each once: the decoder's and the translator's indices are each
    an item's (in the export, in the decoded batch), and an item the decoder refused never
    reaches the translator; an event ingest would refuse is one more."""
    translated_items = {r.index for r in translated.refused if r.reason not in NOT_ERRORS}
    return len({r.index for r in batch.refused}) + len(translated_items) + len(unfit)


def _letter(route: str, client: str, refusal: Refusal) -> bytes:
    """The DLQ value of a refused item: where it came from and why, bounded."""
    return orjson.dumps(
        {
            "route": route,
            "client": client[:100],
            "index": refusal.index,
            "reason": refusal.reason,
            "detail": refusal.detail[:1000],
        }
    )


def taken(signal: Signal, errors: list[Refusal], rejected: int) -> Taken:
    """The partial success of an export: its items not counted, and the reasons in words."""
    if not errors:
        return Taken()
    reasons = Counter(r.reason for r in errors).most_common(MAX_NAMED_REASONS)
    named = ", ".join(f"{reason} x{n}" for reason, n in reasons)
    first = errors[0].detail[:200]
    noun = "spans" if signal == "traces" else "log records"
    message = (
        f"{len(errors)} {noun} or evaluations not counted ({named}; e.g. {first}); "
        "each is on the dead-letter topic with its reason"
    )
    return Taken(rejected=rejected, message=message)


def counted(
    metrics: Metrics,
    signal: Signal,
    sent: list[InEvent],
    translated: Translated,
    refused: list[Refusal],
) -> None:
    """Count what became of one export's items: the events sent, by type; the items refused,
    by reason; the evaluations counted at the request, guarded, ignored and unmatched."""
    for kind, n in Counter(TYPES[type(event)] for event in sent).items():
        metrics.otlp.events.labels(kind).inc(n)
    for reason, n in Counter(r.reason for r in refused).items():
        metrics.otlp.refused.labels(signal, reason).inc(n)
    if translated.request_level:
        metrics.otlp.evaluations.labels("request_level").inc(translated.request_level)
    if translated.guarded:
        metrics.otlp.evaluations.labels("guarded").inc(translated.guarded)
    if translated.no_rollout:
        metrics.otlp.ignored.labels("http", signal).inc(translated.no_rollout)
    if translated.unmatched:
        metrics.otlp.evaluations.labels("unmatched").inc(translated.unmatched)
