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

from collections import OrderedDict
from collections.abc import Iterator, KeysView
from itertools import islice, repeat
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


class Window(Generic[V]):
    """A map whose entries live ``window_ms`` from their last put, at most ``cap`` of them."""

    __slots__ = ("_cap", "_items", "_window")

    def __init__(self, *, window_ms: int, cap: int) -> None:
        self._window = window_ms
        self._cap = max(1, cap)
        # Ordered: the oldest is popped in one step. A dict whose first entries were
        # popped scans past their empty slots to find the next one, which made each
        # put at the cap cost about eight times a put below it.
        self._items: OrderedDict[str, tuple[int, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> V | None:
        found = self._items.get(key)
        return None if found is None else found[1]

    def pop(self, key: str) -> V | None:
        found = self._items.pop(key, None)
        return None if found is None else found[1]

    def put(self, key: str, value: V, now_ms: int) -> list[V]:
        """Keep ``value`` under ``key`` until ``now_ms + window_ms``; answer the evicted values."""
        items = self._items
        items.pop(key, None)  # re-inserted last: the map stays in order of deadline
        items[key] = (now_ms + self._window, value)
        evicted = []
        while len(items) > self._cap:
            evicted.append(items.popitem(last=False)[1][1])
        return evicted

    def put_all(self, entries: dict[str, V], now_ms: int) -> int:
        """:meth:`put` each of ``entries`` (in C where it can); answer how many were evicted."""
        items = self._items
        if items:
            for key in entries.keys() & items.keys():
                del items[key]
        deadlines = zip(repeat(now_ms + self._window), entries.values())
        items.update(zip(entries, deadlines, strict=True))
        excess = len(items) - self._cap
        if excess <= 0:
            return 0
        for key in list(islice(items, excess)):
            del items[key]
        return excess

    def expire(self, now_ms: int) -> list[V]:
        """Drop and answer the values whose time is up at ``now_ms``."""
        items, gone = self._items, []
        for key, (deadline, value) in items.items():
            if deadline > now_ms:
                break
            gone.append((key, value))
        for key, _ in gone:
            del items[key]
        return [value for _, value in gone]

    def keys(self) -> KeysView[str]:
        return self._items.keys()

    def values(self) -> Iterator[V]:
        return (value for _, value in self._items.values())


class Waiting(msgspec.Struct, Generic[E], frozen=True):
    """An evaluation waiting for the span ``hops`` steps up from the one it belongs to."""

    evaluation: E
    hops: int


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
