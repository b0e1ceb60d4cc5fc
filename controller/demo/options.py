"""The demo's options, checked once: ``rollout-controller demo --help`` describes them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controller.demo.scenario import demo_flags

MAX_DURATION_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """How one demo run goes; invalid values raise ValueError naming the option."""

    duration: float = 300.0
    """Hard cap on the whole run, start-up included, in seconds."""
    flags: int = 2
    """How many flags, each released in rings: the first one's treatment is faulty."""
    llm: bool = True
    """Ask the local model at every stage gate (advisory: recorded and shown)."""
    plain: bool = False
    """Plain log lines instead of the live view (also when stdout is not a terminal)."""
    log: Path | None = None
    """Where every decision and alert goes, one JSON object per line."""

    def __post_init__(self) -> None:
        if not 5 <= self.duration <= MAX_DURATION_SECONDS:
            raise ValueError(f"--duration: 5 to {MAX_DURATION_SECONDS:.0f} seconds")
        try:
            demo_flags(self.flags)
        except ValueError as exc:
            raise ValueError(f"--flags: {exc}") from exc
