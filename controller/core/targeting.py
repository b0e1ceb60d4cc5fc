"""Rings: a rollout scoped to an audience, stages whose audiences widen, and stickiness (#26).

A plan may restrict the whole rollout to an audience, and each stage may name
its own audience and the percent of it served treatment. A stage without an
audience speaks to everyone (in the rollout's audience). Rings are stages
whose audiences differ: ``segment("staff")`` 100% → ``segment("beta")`` 100%
→ ``country == "TH"`` 25% → everyone 5% → 25% → 100%.

**Stickiness.** A unit has one bucket per rollout (:func:`bucketing.bucket`
of the flag, the rollout's salt and the unit). The *rings* at stage ``k`` are
the distinct audiences of stages ``0..k``, each with the highest threshold
any of those stages gave it, ordered by the last stage that named them, so
the current stage's audience is the last ring. A unit is served treatment at
stage ``k`` iff it is in the rollout's audience and, for some ring, it
matches the ring's audience and its bucket is below the ring's threshold.
Moving from stage ``k`` to ``k + 1`` adds a ring or raises a threshold and
never removes or lowers one, so the set of treated units only grows: a unit
served treatment at one stage is served treatment at every later stage of
the same rollout, and no unit flaps back to control as rings widen.

**Cohorts.** The comparison at stage ``k`` is among the units its rings newly
reach: those in the current ring's audience and in no earlier ring's. Among
them the bucket alone decides the arm (treatment below the current
threshold), so treatment and control are drawn from the same audience and
split exactly ``threshold : 100000 - threshold``. Every unit falls in one
:class:`Cohort`; events carry it, ingest counts ``carried`` and ``outside``
apart, and no gate reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.core.audience import AudienceRule
from controller.core.matching import NO_SEGMENTS, Audience, SegmentLookup
from controller.core.messages import Cohort, Ring

MAX_TARGETING_CHARS = 16_384
"""The JSON of all a plan's audiences together: a flag state carries them to every app."""


def audience_key(rule: AudienceRule | None) -> str:
    """Two stages name the same audience iff their keys are equal."""
    return "" if rule is None else rule.to_json()


def rings_of(audiences: Sequence[AudienceRule | None], thresholds: Sequence[int]) -> list[Ring]:
    """The rings of the last of these stages (the stages up to the current one, in order).

    Each distinct audience once, with the highest threshold any stage gave
    it; ordered by the last stage that named it, so the current stage's is last.
    """
    best: dict[str, Ring] = {}
    for rule, limit in zip(audiences, thresholds, strict=True):
        key = audience_key(rule)
        held = best.pop(key, None)
        top = limit if held is None else max(held.threshold, limit)
        best[key] = Ring(audience=rule, threshold=top)  # re-inserted: last named goes last
    current = audience_key(audiences[-1])
    last = best.pop(current)
    # The current stage's own threshold: a watch's holdback may set it below an earlier stage's.
    return [*best.values(), Ring(audience=last.audience, threshold=thresholds[-1])]


@dataclass(frozen=True, slots=True)
class Placement:
    """A unit placed by the rings: whether it is treated, and its cohort."""

    treated: bool
    cohort: Cohort


OUTSIDE = Placement(treated=False, cohort=Cohort.OUTSIDE)


@dataclass(frozen=True, slots=True)
class CompiledRings:
    """A flag state's audience and rings, compiled once and asked per unit."""

    audience: Audience | None
    rings: tuple[tuple[Audience | None, int], ...]

    @classmethod
    def of(cls, audience: AudienceRule | None, rings: Sequence[Ring]) -> CompiledRings:
        compiled = tuple(
            (None if ring.audience is None else Audience.of(ring.audience), ring.threshold)
            for ring in rings
        )
        return cls(None if audience is None else Audience.of(audience), compiled)

    def place(
        self, bucket: int, context: Mapping[str, object], segments: SegmentLookup = NO_SEGMENTS
    ) -> Placement:
        """Where the unit with ``bucket`` and ``context`` stands (see the module's docstring)."""
        if not self.rings or (
            self.audience is not None and not self.audience.matches(context, segments)
        ):
            return OUTSIDE
        treated = carried = False
        *earlier, (current, limit) = self.rings
        for ring, ring_limit in earlier:
            if ring is None or ring.matches(context, segments):
                carried = True
                if bucket < ring_limit:
                    treated = True
                    break
        inside = current is None or current.matches(context, segments)
        if carried:  # the current ring may treat it too: any ring that reaches it counts
            return Placement(treated or (inside and bucket < limit), Cohort.CARRIED)
        if inside:
            return Placement(bucket < limit, Cohort.COMPARED)
        return OUTSIDE


class _Cache:
    """Compiled rings by the identity of the flag state's ring list (bounded)."""

    SIZE = 256

    def __init__(self) -> None:
        self._entries: dict[int, tuple[object, object, CompiledRings]] = {}

    def get(self, audience: AudienceRule | None, rings: Sequence[Ring]) -> CompiledRings:
        entry = self._entries.get(id(rings))
        if entry is not None and entry[0] is rings and entry[1] is audience:
            return entry[2]
        if len(self._entries) >= self.SIZE:
            self._entries.clear()
        compiled = CompiledRings.of(audience, rings)
        self._entries[id(rings)] = (rings, audience, compiled)
        return compiled


_compiled = _Cache()


def compiled(audience: AudienceRule | None, rings: Sequence[Ring]) -> CompiledRings:
    """The compiled form of a flag state's targeting, compiled once per state held."""
    return _compiled.get(audience, rings)


def targeting_json(audience: AudienceRule | None, rings: Sequence[Ring]) -> list[Any]:
    """The targeting part of the signed form: ``[audience, [[audience, threshold], ...]]``."""

    def rule(value: AudienceRule | None) -> Any:
        return None if value is None else value.model_dump(mode="json", by_alias=True)

    return [rule(audience), [[rule(r.audience), r.threshold] for r in rings]]
