"""What one batch's translation keeps: the events it emits (each id once), its refusals
and counts, and the evaluations and conversions it hands on to be joined.

:mod:`.translating` reads spans and logs into these; pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from controller.core.telemetry.attribution import arm_of, node_of
from controller.core.telemetry.evaluations import Evaluation
from controller.core.telemetry.flag_rules import Arm, FlagRules
from controller.core.telemetry.joining import Node
from controller.core.telemetry.signals import (
    MAX_DETAIL_CHARS,
    Attributes,
    Refusal,
    RefusalReason,
    Refused,
    Span,
)
from controller.core.telemetry.timing import Window
from controller.core.wire import InEvent


@dataclass(slots=True)
class Translated:
    """The events of one batch, and what of it was not counted."""

    events: list[InEvent] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    request_level: int = 0
    """Exposures whose unit is the request (its trace): no unit was named."""
    no_rollout: int = 0
    """Evaluations of flags no rollout published: ignored (not an error)."""
    guarded: int = 0
    """Evaluations too near a version change to attribute (not an error)."""
    unmatched: int = 0
    """Evaluations whose request outcome will never be counted (their exposure was)."""
    unknown: dict[str, int] = field(default_factory=dict)
    """The flags of the evaluations ``no_rollout`` counts, each with its newest evaluation's
    time (ms): a rollout published since the flags were read may know them."""
    unknown_items: dict[int, None] = field(default_factory=dict)
    """The items (indices in the batch) that hold such an evaluation, in order, each once."""

    def not_published(self, flag: str, index: int, ts: int) -> None:
        """An evaluation of ``flag``, which no rollout the translator knows published."""
        self.no_rollout += 1
        if ts > self.unknown.get(flag, ts - 1):
            self.unknown[flag] = ts
        self.unknown_items[index] = None


def second_look(first: Translated, second: Translated, items: list[int]) -> Translated:
    """``first`` with ``second``, the translation of its ``items`` again (the flags read
    again in between): the events of both, each id once; ``second``'s refusals at their
    indices in the batch, each once (an item looked at twice refuses what it refused
    before again). Every evaluation of a flag ``first`` did not know is in ``items`` and
    was looked at again, so the flags still unknown are ``second``'s; the other counts of
    an item with evaluations of several flags may count it twice."""
    ids = {event.id for event in first.events}
    again = (Refusal(_in(items, r.index), r.reason, r.detail) for r in second.refused)
    return Translated(
        events=[*first.events, *(e for e in second.events if e.id not in ids)],
        refused=[*first.refused, *(r for r in again if r not in first.refused)],
        request_level=first.request_level + second.request_level,
        no_rollout=second.no_rollout,
        guarded=first.guarded + second.guarded,
        unmatched=first.unmatched + second.unmatched,
        unknown=second.unknown,
        unknown_items={_in(items, i): None for i in second.unknown_items},
    )


def _in(items: list[int], index: int) -> int:
    """The index in the batch of the ``index``-th of ``items`` (one that names no item, as
    the whole body's, as it is)."""
    return items[index] if 0 <= index < len(items) else index


class Counted(msgspec.Struct, frozen=True, gc=False):
    """An evaluation that counted: what its outcome and conversions are counted for."""

    flag: str
    unit: str
    arm: Arm
    version: int
    trace_id: str
    rules: FlagRules
    anchor: str
    """The span (or record) the exposure's id derives from, and its digest."""
    digest: str
    replayed: bool = False
    """Read again for its joins only (its record was counted before a restart)."""


class Conversion(msgspec.Struct, frozen=True, gc=False):
    name: str
    trace_id: str
    anchor: str
    """The span (or record) it is in, for its id."""
    ts: int
    attributes: Attributes
    replayed: bool = False
    """Read again for its joins only, as :attr:`Counted.replayed`."""


@dataclass(slots=True)
class Run:
    """One call's state: the clock, its spans, the rules looked up and the ids emitted."""

    now_ms: int
    window: Window
    nodes: dict[str, Node] = field(default_factory=dict)
    rules: dict[str, FlagRules | None] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)
    out: Translated = field(default_factory=Translated)
    noted: dict[str, dict[str, Counted]] | None = None
    """Spans only: each trace's counted evaluations by flag, put in the buffer at the end."""
    replaying: bool = False
    """The batch was counted before a restart and is read again for its joins only."""
    ready: list[InEvent] | None = None
    """Replaying: where a join with a half read fresh goes (the translator's ready events)."""

    def joined(self, event: InEvent, *, fresh: bool) -> None:
        """Emit an event a join made; ``fresh``: one of its halves was not replayed.

        A join of replayed halves alone was counted before the restart (both records were
        counted, and whichever came second emitted it): it is dropped. One with a fresh half
        may not have been: replaying, it is handed on (:attr:`ready`) to be folded with the
        next fresh batch, where the id window counts it once."""
        if not self.replaying:
            self.emit(event)
        elif fresh and self.ready is not None and event.id not in self.ids:
            self.ids.add(event.id)
            self.ready.append(event)

    def emit(self, event: InEvent) -> None:
        if event.id not in self.ids:
            self.ids.add(event.id)
            self.out.events.append(event)

    def refuse(self, index: int, reason: RefusalReason, detail: str) -> None:
        self.out.refused.append(Refusal(index, reason, detail[:MAX_DETAIL_CHARS]))

    def refuse_time(self, index: int, detail: str) -> None:
        self.refuse(index, "bad_time", detail)


def readable(kept: list[tuple[int, Span]], run: Run) -> list[tuple[int, Span]]:
    """The spans whose request outcome can be read, each in ``run.nodes``; a request span
    whose HTTP status cannot be (:func:`http_status`) is refused whole, its evaluations too."""
    nodes = run.nodes
    readable: list[tuple[int, Span]] = []
    for index, span in kept:
        try:
            nodes[span.span_id] = node_of(span)
        except Refused as refused:
            run.refuse(index, refused.reason, refused.detail)
        else:
            readable.append((index, span))
    return readable


def refuse_unarmed(evaluation: Evaluation, rules: FlagRules, index: int, run: Run) -> None:
    """Say why an evaluation counts in no arm: its variant names none (or the provider
    failed), or it happened at an implausible time."""
    arm = arm_of(evaluation, rules.arms)
    if isinstance(arm, tuple):
        run.refuse(index, *arm)
    else:
        when = run.window.fault(evaluation.time_ns, "evaluated")
        run.refuse_time(index, f"{evaluation.flag}: {when}")
