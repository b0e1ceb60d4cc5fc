"""What OFREP evaluates from: the flag states and segments, held in memory.

The flag states are held in memory, not read per evaluation: a snapshot
loaded with the same few Redis round trips as ``GET /flags`` (whatever the
number of flags). No evaluation is answered from a snapshot older than
``max_age_seconds``, counted from when its read began, whether requests came
steadily or after an idle hour: a request that finds the snapshot older
waits for a reload (one reload, shared by every request that arrives
meanwhile, bounded by ``load_seconds``; past that, or if Redis does not
answer, a 503 naming the dependency, as for the first load). So that steady
traffic seldom waits, a request that finds the snapshot past half its
``max_age`` starts a reload behind it and is answered from the one held.

Why on demand rather than on a timer: the check at request time is what
bounds an answer's age (a timer's reload may fail or lag, and the answer
would be older); with that check in place a timer adds only Redis reads
while no app asks. :meth:`SnapshotCache.refresh` is the one way a snapshot
is replaced, so whatever learns of a change sooner calls it too; a snapshot
that differs from the one it replaced is handed to ``on_change``, which the
event streams (:mod:`controller.adapters.ofrep.streams`) fan out from.

The segments that rules name (``user_id in segment("beta")``) are held the
same way, reloaded with the states (a segment read again only when its
version changed); a failed segment read keeps the segments held, and a
segment not held is unknown to rules, so it matches nobody. The bulk
endpoint's ``ETag`` covers the segments' versions too.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import orjson
import structlog

from controller.core.common import StoreError, split
from controller.core.reading import FlagStates, FlagStateView
from controller.core.rules import NO_HELD_SEGMENTS, HeldSegments, targeting_json

FlagStateSource = Callable[[], Awaitable[FlagStates]]
SegmentSource = Callable[[HeldSegments], Awaitable[HeldSegments]]
"""The segments held now, given those held before (so unchanged ones are not read again)."""
MAX_AGE_SECONDS = 1.0
"""The oldest snapshot an evaluation is answered from."""
AHEAD = 0.5
"""Past this share of ``max_age`` a request starts a reload behind it and is not held up."""
LOAD_SECONDS = 5.0
"""How long a request waits for a snapshot that must be reloaded before it is refused."""
log = structlog.get_logger("controller.ofrep")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The flag states and segments evaluations read, and a tag that changes with any of them;
    ``places``: each environment's own tag (None: the default environment's), which changes
    only with its flags or the segments."""

    states: Mapping[str, FlagStateView]
    tag: bytes
    segments: HeldSegments = NO_HELD_SEGMENTS
    places: Mapping[str | None, str] = field(default_factory=dict)

    @classmethod
    def of(cls, states: FlagStates, segments: HeldSegments = NO_HELD_SEGMENTS) -> Snapshot:
        held = {state.flag: state for state in states.root}
        fields = [_fields(s) for s in sorted(held.values(), key=lambda s: s.flag)]
        tag = hashlib.sha256(orjson.dumps(fields) + segments.tag).digest()
        by_place: dict[str | None, list[tuple[object, ...]]] = {}
        for each in fields:
            by_place.setdefault(split(str(each[0]))[1], []).append(each)
        places = {where: _tag(rows, segments) for where, rows in by_place.items()}
        return cls(held, tag, segments, places)

    def tag_of(self, place: str | None) -> str:
        """The tag of the flags stored in ``place`` (None: the default environment)."""
        found = self.places.get(place)
        return found if found is not None else _tag([], self.segments)


def _fields(s: FlagStateView) -> tuple[object, ...]:
    """What of a state an evaluation reads: a change to any of it changes the tags."""
    return (
        (s.flag, s.version, s.status.value, s.percent, s.salt, s.rollout_id, s.stage)
        + (() if s.rings is None else (targeting_json(s.audience, s.rings),))
        + (() if s.values is None else (s.values.signed(),))
    )


def _tag(rows: list[tuple[object, ...]], segments: HeldSegments) -> str:
    return hashlib.sha256(orjson.dumps(rows) + segments.tag).hexdigest()[:32]


class SnapshotCache:
    """The latest :class:`Snapshot`, never older than ``max_age`` when it is answered from."""

    def __init__(
        self,
        load: FlagStateSource,
        *,
        segments: SegmentSource | None = None,
        max_age: float = MAX_AGE_SECONDS,
        load_seconds: float = LOAD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[Snapshot], None] | None = None,
    ) -> None:
        """``on_change`` is told each snapshot whose tag differs from the one it replaced
        (the event streams' watcher)."""
        self._load, self._max_age, self._clock = load, max_age, clock
        self.on_change = on_change
        self._segments, self._load_seconds = segments, load_seconds
        self._snapshot: Snapshot | None = None
        self._read_at = 0.0
        self._reload: asyncio.Task[Snapshot] | None = None

    async def get(self) -> Snapshot:
        """The snapshot held while younger than ``max_age``, else a reloaded one."""
        held, age = self._snapshot, self._clock() - self._read_at
        if held is None or age >= self._max_age:
            return await self.refresh()
        if age >= self._max_age * AHEAD:
            self._reloading()
        return held

    async def refresh(self) -> Snapshot:
        """A snapshot read now: the reload under way, else a new one; StoreError if it fails
        or takes longer than ``load_seconds``."""
        try:
            async with asyncio.timeout(self._load_seconds):
                # A request that goes away stops waiting; the reload goes on for the others.
                return await asyncio.shield(self._reloading())
        except TimeoutError as exc:
            reason = f"the flag states did not load within {self._load_seconds:g} s"
            raise StoreError(reason) from exc

    @property
    def reloading(self) -> asyncio.Task[Snapshot] | None:
        """The reload under way, if any."""
        return self._reload

    def _reloading(self) -> asyncio.Task[Snapshot]:
        if self._reload is None:
            self._reload = asyncio.create_task(self._reloaded(), name="ofrep-snapshot")
            self._reload.add_done_callback(self._settled)
        return self._reload

    async def _reloaded(self) -> Snapshot:
        started = self._clock()
        states = await self._load()
        held = NO_HELD_SEGMENTS if self._snapshot is None else self._snapshot.segments
        if self._segments is not None:
            try:
                held = await self._segments(held)
            except Exception as exc:
                # Rules go on from the segments held (none yet: unknown, so no match).
                log.warning("ofrep_segments_reload_failed", error=repr(exc)[:300])
        # Its age counts from the read's start: the states may have changed since.
        before, self._snapshot = self._snapshot, Snapshot.of(states, held)
        self._read_at = started
        if self.on_change is not None and (before is None or before.tag != self._snapshot.tag):
            self.on_change(self._snapshot)
        return self._snapshot

    def _settled(self, task: asyncio.Task[Snapshot]) -> None:
        self._reload = None
        if not task.cancelled() and (error := task.exception()) is not None:
            # The requests waiting are told (503); one served ahead of max_age is not.
            log.warning("ofrep_snapshot_reload_failed", error=repr(error)[:300])
