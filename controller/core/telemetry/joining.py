"""The join buffer: what one batch of spans or logs leaves for a later one to complete.

The hooks' evaluations and the requests they belong to arrive apart: an
evaluation's span ends (and is exported) before its SERVER ancestor, a log
record travels on the logs pipeline while its span travels on the traces one,
and a conversion may be exported before the evaluation in its trace. The
buffer holds, each for ``window_ms`` from when it was put:

* spans seen, as :class:`Node` (parent link, kind, times, error), so that a
  late evaluation still finds its request;
* evaluations waiting for a span not seen yet, by that span's id;
* traces with counted evaluations of flags that count conversions, by flag, for
  conversions arriving later;
* conversions parked by trace, for evaluations arriving later.

It is pure and bounded: the clock is passed in, each map holds at most
``max_pending`` keys and drops its oldest first. An evaluation dropped while
waiting (expired or evicted) is *unmatched*: its exposure was counted when it
arrived, its request outcome never is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, KeysView
from itertools import repeat
from operator import itemgetter
from typing import Generic, TypeVar

import msgspec

MAX_PER_KEY = 256
"""Evaluations waiting for one span, or conversions parked in one trace, at most."""
V = TypeVar("V")
E = TypeVar("E")
C = TypeVar("C")


class Node(msgspec.Struct, frozen=True, gc=False):
    """What the buffer keeps of a span: enough to walk up to its request and count it."""

    span_id: str
    parent: str
    server: bool
    start_ns: int
    end_ns: int
    failed: bool
    """Its status is ERROR."""
    http_status: int | None
    failure: str | None = None
    """A request's name where its HTTP status is an error's (``5xx GET /cart/{id}``;
    :func:`~.attribution.request_failure`)."""


class _Run:
    """Keys put with one deadline, in the order they were put (each key once)."""

    __slots__ = ("deadline", "keys", "moved", "open", "start")

    def __init__(self, deadline: int) -> None:
        self.deadline = deadline
        self.keys: list[str] = []
        self.start = 0
        """The keys before it were dropped (evicted or expired)."""
        self.moved = 0
        """How many of the keys from ``start`` on left the run since (put again, popped)."""
        self.open = True
        """Puts of its deadline may go into it: no key was popped from it (a key put back
        after a pop goes into a new run, so that a key is in a run once)."""


class Window(Generic[V]):
    """A map whose entries live ``window_ms`` from their last put, at most ``cap`` of them.

    The keys are kept in runs, one per deadline in the order put, and each entry names
    its run: dropping the oldest (evicted past the cap, or expired) takes the first keys
    of the oldest run in one slice and pops them from the map without a step per key in
    Python, where an ordered map popped them one by one. A key put again, or popped,
    leaves its place in its run behind until that run is dropped (it is skipped then); a
    key put again into the run it is in goes into a new run of the same deadline, so a
    key is in one run once. Runs are compacted once they hold more such places than the
    cap, so memory stays bounded by the cap.
    """

    __slots__ = ("_cap", "_items", "_moved", "_runs", "_window")

    def __init__(self, *, window_ms: int, cap: int) -> None:
        self._window = window_ms
        self._cap = max(1, cap)
        self._items: dict[str, tuple[_Run, V]] = {}
        self._runs: deque[_Run] = deque()
        self._moved = 0
        """The runs' ``moved``, summed."""

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> V | None:
        found = self._items.get(key)
        return None if found is None else found[1]

    def pop(self, key: str) -> V | None:
        found = self._items.pop(key, None)
        if found is None:
            return None
        self._left(found[0], 1)
        found[0].open = False
        return found[1]

    def put(self, key: str, value: V, now_ms: int) -> list[V]:
        """Keep ``value`` under ``key`` until ``now_ms + window_ms``; answer the evicted values."""
        items = self._items
        run = self._run(now_ms + self._window)
        old = items.pop(key, None)  # re-inserted last: the map stays in the order put
        if old is not None:
            self._left(old[0], 1)
            if old[0] is run:  # in a run of its own after its old place, which is skipped
                run = self._new_run(run.deadline)
        run.keys.append(key)
        items[key] = (run, value)
        return [value for _, value in self._evict()] if len(items) > self._cap else []

    def put_all(self, entries: dict[str, V], now_ms: int) -> int:
        """:meth:`put` each of ``entries`` (in C where it can); answer how many were evicted."""
        if not entries:
            return 0
        items = self._items
        run = self._run(now_ms + self._window)
        if items:
            again = False
            for key in entries.keys() & items.keys():
                old = items.pop(key)[0]
                self._left(old, 1)
                again = again or old is run
            if again:  # in a run of their own after their old places, as :meth:`put`
                run = self._new_run(run.deadline)
        run.keys.extend(entries)
        items.update(zip(entries, zip(repeat(run), entries.values()), strict=True))
        return len(self._evict()) if len(items) > self._cap else 0

    def expire(self, now_ms: int) -> list[V]:
        """Drop and answer the values whose time is up at ``now_ms``."""
        runs, gone = self._runs, []
        while runs:
            run = runs[0]
            if run.deadline > now_ms and len(run.keys) - run.start > run.moved:
                break  # a run that still holds a key (one whose keys all left is passed)
            gone += self._drop(run, len(run.keys))
            runs.popleft()
        return list(map(itemgetter(1), gone))

    def keys(self) -> KeysView[str]:
        return self._items.keys()

    def values(self) -> Iterator[V]:
        return (value for _, value in self._items.values())

    def _run(self, deadline: int) -> _Run:
        """The run to put into at ``deadline``: the last one if it has that deadline and is
        open."""
        last = self._runs[-1] if self._runs else None
        if last is not None and last.deadline == deadline and last.open:
            return last
        return self._new_run(deadline)

    def _new_run(self, deadline: int) -> _Run:
        if self._moved > self._cap:
            self._compact()
        run = _Run(deadline)
        self._runs.append(run)
        return run

    def _left(self, run: _Run, count: int) -> None:
        run.moved += count
        self._moved += count

    def _evict(self) -> list[tuple[_Run, V]]:
        """Drop the oldest entries past the cap."""
        runs, evicted = self._runs, []
        while (excess := len(self._items) - self._cap) > 0:
            run = runs[0]
            evicted += self._drop(run, excess)
            if run.start >= len(run.keys):
                runs.popleft()
        return evicted

    def _drop(self, run: _Run, count: int) -> list[tuple[_Run, V]]:
        """Pop the first ``count`` entries still in ``run`` from the map."""
        items, start = self._items, run.start
        if not run.moved:  # every key from start on is in the map, and in this run
            victims = run.keys[start : start + count]
            run.start = start + len(victims)
            return list(map(items.pop, victims))
        dropped: list[tuple[_Run, V]] = []
        keys, end, skipped = run.keys, len(run.keys), 0
        while start < end and len(dropped) < count:
            key = keys[start]
            start += 1
            found = items.get(key)
            if found is not None and found[0] is run:
                del items[key]
                dropped.append(found)
            else:
                skipped += 1
        run.start = start
        self._left(run, -skipped)
        return dropped

    def _compact(self) -> None:
        """Rewrite the runs without the keys that left them (amortized: more than the cap
        such keys accumulated since the last time)."""
        items, kept = self._items, deque[_Run]()
        for run in self._runs:
            live = [key for key in run.keys[run.start :] if _owner(items.get(key)) is run]
            if live:
                run.keys, run.start, run.moved = live, 0, 0
                kept.append(run)
        self._runs, self._moved = kept, 0


def _owner(found: tuple[_Run, object] | None) -> _Run | None:
    return None if found is None else found[0]


class Waiting(msgspec.Struct, Generic[E], frozen=True):
    """An evaluation waiting for the span ``hops`` steps up from the one it belongs to."""

    evaluation: E
    hops: int
    fresh: bool = False
    """A span on the way up to here was read fresh (not replayed after a restart)."""


class JoinBuffer(Generic[E, C]):
    """Spans, waiting evaluations, traces with evaluations and parked conversions."""

    def __init__(self, *, window_ms: int, max_pending: int) -> None:
        self.spans: Window[Node] = Window(window_ms=window_ms, cap=max_pending)
        self._waiting: Window[list[Waiting[E]]] = Window(window_ms=window_ms, cap=max_pending)
        self._traces: Window[dict[str, E]] = Window(window_ms=window_ms, cap=max_pending)
        self._parked: Window[list[C]] = Window(window_ms=window_ms, cap=max_pending)

    def remember(self, node: Node, now_ms: int) -> None:
        self.spans.put(node.span_id, node, now_ms)

    def remember_all(self, nodes: dict[str, Node], now_ms: int) -> None:
        self.spans.put_all(nodes, now_ms)

    def wait(self, span_id: str, waiting: Waiting[E], now_ms: int) -> int:
        """Hold ``waiting`` until ``span_id`` arrives; answer how many evaluations were evicted."""
        held = self._waiting.get(span_id) or []
        if len(held) >= MAX_PER_KEY:
            return 1
        held.append(waiting)
        return sum(len(lost) for lost in self._waiting.put(span_id, held, now_ms))

    def awaited(self, span_ids: dict[str, Node]) -> list[str]:
        """Those of ``span_ids`` that evaluations wait for (a set operation, not a loop)."""
        return list(self._waiting.keys() & span_ids.keys()) if len(self._waiting) else []

    def arrived(self, span_id: str) -> list[Waiting[E]]:
        """The evaluations that waited for ``span_id`` (no longer held)."""
        return self._waiting.pop(span_id) or []

    def note(self, trace_id: str, flag: str, evaluation: E, now_ms: int) -> None:
        """Remember a counted evaluation of ``flag`` in ``trace_id`` (its first one is kept)."""
        flags = self._traces.get(trace_id) or {}
        flags.setdefault(flag, evaluation)
        self._traces.put(trace_id, flags, now_ms)

    def note_all(self, traces: dict[str, dict[str, E]], now_ms: int) -> None:
        """Remember the counted evaluations of each trace, by flag (as :meth:`note` each)."""
        self._traces.put_all(traces, now_ms)

    def evaluated(self, trace_id: str) -> dict[str, E]:
        """The first counted evaluation of each flag in ``trace_id``."""
        return self._traces.get(trace_id) or {}

    def park(self, trace_id: str, conversion: C, now_ms: int) -> None:
        held = self._parked.get(trace_id) or []
        if len(held) >= MAX_PER_KEY:
            return
        held.append(conversion)
        self._parked.put(trace_id, held, now_ms)

    def parked(self, trace_id: str) -> list[C]:
        return self._parked.get(trace_id) or []

    def expire(self, now_ms: int) -> int:
        """Drop what is past its window; answer how many waiting evaluations were dropped."""
        self.spans.expire(now_ms)
        self._traces.expire(now_ms)
        self._parked.expire(now_ms)
        return sum(len(lost) for lost in self._waiting.expire(now_ms))

    def sizes(self) -> dict[str, int]:
        """How many keys each part holds (spans, waiting, traces, parked)."""
        return {
            "spans": len(self.spans),
            "waiting": len(self._waiting),
            "traces": len(self._traces),
            "parked": len(self._parked),
        }
