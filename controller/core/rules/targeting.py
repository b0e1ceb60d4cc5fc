"""Rings: a rollout scoped to an audience, stages whose audiences widen, and stickiness.

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
from enum import StrEnum
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from controller.core.rules.audience import AudienceRule
from controller.core.rules.matching import NO_SEGMENTS, Audience, SegmentLookup

MAX_TARGETING_CHARS = 16_384
"""The JSON of all a plan's audiences together: a flag state carries them to every app."""


class Cohort(StrEnum):
    """Where a unit stands in a targeted stage's comparison."""

    COMPARED = "compared"
    """In the current ring's audience and no earlier ring's: treatment or control by bucket."""
    CARRIED = "carried"
    """In an earlier ring's audience: its arm was decided there; compared by no gate."""
    OUTSIDE = "outside"
    """In no ring's audience (or outside the rollout's): control, compared by no gate."""
    HOLDOUT = "holdout"
    """Held out by the flag's holdout (:mod:`controller.core.wire.holdouts`): control,
    compared by no gate; the holdout's report compares it with everyone else."""


MAX_RINGS = 20
"""A plan has at most 20 stages, so a flag state at most 20 rings."""


class Ring(BaseModel):
    """One ring of a flag state: an audience (``None``: everyone) and its bucket threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    audience: AudienceRule | None = None
    threshold: Annotated[StrictInt, Field(ge=0, le=100_000)] = Field(
        description="Units of the audience whose bucket is below this are served treatment."
    )


class StagePlan(Protocol):
    """What the rings read of a plan's stage."""

    @property
    def audience(self) -> AudienceRule | None: ...
    @property
    def percent(self) -> float: ...


def rings_problem(
    audience: AudienceRule | None, stages: Sequence[StagePlan], *, limited: bool
) -> str | None:
    """Why these stages cannot widen as rings, or None: each audience's percents increase,
    once a stage speaks to everyone no later one narrows, a 100% stage before the last needs
    the plan's ``limits`` (``limited``), and all the rules are at most 16 KiB of JSON."""
    seen: dict[str, float] = {}
    everyone_from: int | None = None
    for i, stage in enumerate(stages):
        if stage.percent == 100 and i < len(stages) - 1 and not limited:
            return (
                f"stages.{i}: a stage at 100% of its audience has no concurrent control;"
                " the plan needs `limits` (e.g. error_rate, latency_p95_ms) to gate it"
            )
        key = audience_key(stage.audience)
        if key in seen and stage.percent <= seen[key]:
            return (
                f"stages.{i}.percent: a stage with the same audience as an earlier one must"
                f" serve more of it, got {stage.percent:g} after {seen[key]:g}"
            )
        seen[key] = stage.percent
        if stage.audience is None and everyone_from is None:
            everyone_from = i
        elif stage.audience is not None and everyone_from is not None:
            return (
                f"stages.{i}.audience: stages.{everyone_from} already speaks to everyone;"
                " no later stage may narrow the audience"
            )
    size = sum(len(audience_key(rule)) for rule in [audience, *(s.audience for s in stages)])
    if size > MAX_TARGETING_CHARS:
        return f"the plan's audiences take {size} characters of JSON, at most {MAX_TARGETING_CHARS}"
    return None


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
