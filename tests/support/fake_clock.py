"""A clock a test moves by hand, for code that takes its clock as an argument."""

from __future__ import annotations


class FakeClock:
    """Monotonic seconds that only move when :meth:`advance` says so; call it to read it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
