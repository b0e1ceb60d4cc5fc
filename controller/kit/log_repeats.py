"""Repeated log lines, one per cause per interval: the decision, on a clock you pass in.

A broker that is away makes its client log the same error many times a second
(a 17 s outage wrote 2,671 lines). :class:`RepeatLimiter` decides, for each line
of a cause (whatever identifies "the same error": the caller chooses), whether
it is shown, and counts those held back:

* a cause's first line is shown, and opens its window of ``interval`` seconds;
* its lines within the window are held back and counted;
* its first line after the window is shown with the count of those held back
  (:class:`Repeats`), and opens the next window;
* a window that ended with lines held back and no line since is told by
  :meth:`RepeatLimiter.due`, and that line counts as shown: the next window
  opens then, so a cause takes at most one line per interval however its
  lines fall. A window that ended with none held back closes: the cause's
  next line is a first. So an outage's last lines are counted too.

No I/O and no clock of its own: every call takes ``now`` (seconds, any
monotonic origin), so tests turn the clock.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

DEFAULT_MAX_CAUSES = 1024
"""Causes tracked at once; past it a new cause's lines are all shown (never lost)."""


@dataclass(frozen=True, slots=True)
class Repeats:
    """Lines of ``cause`` held back: ``count`` of them, ``seconds`` from the line shown
    before them to the last of them."""

    cause: Hashable
    count: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether the line is shown, and the held-back lines it tells of (shown only)."""

    show: bool
    repeats: Repeats | None = None


_HELD = Verdict(show=False)
_SHOWN = Verdict(show=True)


@dataclass(slots=True)
class _Window:
    opened: float
    held: int = 0
    last: float = 0.0


class RepeatLimiter:
    """One shown line per cause per ``interval`` seconds; the others counted."""

    def __init__(self, interval: float, *, max_causes: int = DEFAULT_MAX_CAUSES) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.interval = interval
        self._max_causes = max_causes
        self._windows: dict[Hashable, _Window] = {}

    def see(self, cause: Hashable, now: float) -> Verdict:
        """The verdict on a line of ``cause`` written at ``now``."""
        window = self._windows.get(cause)
        if window is not None and now < window.opened + self.interval:
            window.held += 1
            window.last = now
            return _HELD
        if window is None and not self._room(now):
            return _SHOWN  # too many causes at once: shown, untracked
        self._windows[cause] = _Window(opened=now)
        if window is None or window.held == 0:
            return _SHOWN
        return Verdict(show=True, repeats=_repeats(cause, window))

    def due(self, now: float) -> list[Repeats]:
        """The windows ended by ``now`` with lines held back, told once each (the line
        that tells them opens the cause's next window); ended windows with none held
        back close."""
        ended = [c for c, w in self._windows.items() if now >= w.opened + self.interval]
        told = []
        for cause in ended:
            window = self._windows.pop(cause)
            if window.held > 0:
                told.append(_repeats(cause, window))
                self._windows[cause] = _Window(opened=now)
        return told

    def next_due(self) -> float | None:
        """When the earliest window with lines held back ends; None when none has."""
        ends = [w.opened + self.interval for w in self._windows.values() if w.held > 0]
        return min(ends, default=None)

    def pending(self) -> list[Repeats]:
        """Every window's held-back lines, reported and forgotten (at close)."""
        held = [_repeats(c, w) for c, w in self._windows.items() if w.held > 0]
        self._windows.clear()
        return held

    def tracked(self) -> set[Hashable]:
        """The causes with a window open."""
        return set(self._windows)

    def _room(self, now: float) -> bool:
        if len(self._windows) < self._max_causes:
            return True
        for cause in [c for c, w in self._windows.items() if now >= w.opened + self.interval]:
            if self._windows[cause].held == 0:
                del self._windows[cause]
        return len(self._windows) < self._max_causes


def _repeats(cause: Hashable, window: _Window) -> Repeats:
    return Repeats(cause=cause, count=window.held, seconds=window.last - window.opened)
