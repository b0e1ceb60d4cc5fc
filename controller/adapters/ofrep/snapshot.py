"""What OFREP evaluates from: the flag states and segments, held in memory.

The flag states are held in memory, not read per evaluation: a snapshot
loaded with the same few Redis round trips as ``GET /flags`` (whatever the
number of flags), reloaded in the background once it is
``max_age_seconds`` old while evaluations go on from the one held. A state
change therefore reaches OFREP answers within about ``max_age_seconds``;
the first request waits for the first load (503 naming the dependency if
Redis does not answer). The segments that rules name (``user_id in
segment("beta")``) are held the same way, reloaded with the states (a
segment read again only when its version changed); a failed reload keeps
the segments held, and a segment not held is unknown to rules, so it matches
nobody. The bulk endpoint's ``ETag`` covers the segments' versions too.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson
import structlog

from controller.core.reading import FlagStates, FlagStateView
from controller.core.rules import NO_HELD_SEGMENTS, HeldSegments, targeting_json

FlagStateSource = Callable[[], Awaitable[FlagStates]]
SegmentSource = Callable[[HeldSegments], Awaitable[HeldSegments]]
"""The segments held now, given those held before (so unchanged ones are not read again)."""
MAX_AGE_SECONDS = 1.0
"""How old a snapshot may be before a request starts its reload."""
log = structlog.get_logger("controller.ofrep")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The flag states and segments evaluations read, and a tag that changes with any of them."""

    states: Mapping[str, FlagStateView]
    tag: bytes
    segments: HeldSegments = NO_HELD_SEGMENTS

    @classmethod
    def of(cls, states: FlagStates, segments: HeldSegments = NO_HELD_SEGMENTS) -> Snapshot:
        held = {state.flag: state for state in states.root}
        fields = [
            (s.flag, s.version, s.status.value, s.percent, s.salt, s.rollout_id, s.stage)
            + (() if s.rings is None else (targeting_json(s.audience, s.rings),))
            + (() if s.values is None else (s.values.signed(),))
            for s in sorted(held.values(), key=lambda s: s.flag)
        ]
        tag = hashlib.sha256(orjson.dumps(fields) + segments.tag).digest()
        return cls(held, tag, segments)


class SnapshotCache:
    """The latest :class:`Snapshot`, reloaded in the background once ``max_age`` old."""

    def __init__(
        self,
        load: FlagStateSource,
        *,
        segments: SegmentSource | None = None,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load, self._max_age, self._clock = load, max_age, clock
        self._segments = segments
        self._snapshot: Snapshot | None = None
        self._loaded_at = 0.0
        self._first = asyncio.Lock()
        self._reload: asyncio.Task[None] | None = None

    async def get(self) -> Snapshot:
        """The snapshot held; the first call loads it, and a stale one starts a reload."""
        if self._snapshot is None:
            async with self._first:
                if self._snapshot is None:
                    await self._refresh()
            assert self._snapshot is not None
        elif self._clock() - self._loaded_at >= self._max_age and self._reload is None:
            self._reload = asyncio.create_task(self._background(), name="ofrep-snapshot")
        return self._snapshot

    @property
    def reloading(self) -> asyncio.Task[None] | None:
        """The background reload under way, if any."""
        return self._reload

    async def _refresh(self) -> None:
        states = await self._load()
        held = NO_HELD_SEGMENTS if self._snapshot is None else self._snapshot.segments
        if self._segments is not None:
            try:
                held = await self._segments(held)
            except Exception as exc:
                # Rules go on from the segments held (none yet: unknown, so no match).
                log.warning("ofrep_segments_reload_failed", error=repr(exc)[:300])
        self._snapshot, self._loaded_at = Snapshot.of(states, held), self._clock()

    async def _background(self) -> None:
        try:
            await self._refresh()
        except Exception as exc:
            # Evaluations go on from the states held; the next request tries again.
            self._loaded_at = self._clock()
            log.warning("ofrep_snapshot_reload_failed", error=repr(exc)[:300])
        finally:
            self._reload = None
