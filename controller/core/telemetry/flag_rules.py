"""How the telemetry of each flag under rollout is read: its arms, unit, errors and
conversions (from its plan's ``telemetry``), and its versions over time."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from controller.core.rollouts import TelemetryPlan

Arm = Literal["treatment", "control"]
DEFAULT_ARMS: Mapping[str, Arm] = MappingProxyType({"treatment": "treatment", "control": "control"})


@dataclass(frozen=True, slots=True)
class FlagRules:
    """How the telemetry of one flag is read, from its plan and its versions."""

    flag: str
    version: int
    """The flag version in force now."""
    timeline: tuple[tuple[int, int], ...] = ()
    """(flag version, since epoch ms), in ascending time; empty: ``version`` throughout."""
    arms: Mapping[str, Arm] = field(default_factory=lambda: DEFAULT_ARMS)
    """Each variant an evaluation may name, and the arm it stands for."""
    unit_attribute: str | None = None
    error_status_min: int = 500
    conversions: frozenset[str] = frozenset()
    """Names of spans, span events or log records counted as that named conversion."""
    conversion_value: str = "value"
    """The attribute holding a conversion's value."""
    failures: bool = False
    """The plan guards crashes or exceptions: those in the flag's traces are counted."""


Lookup = Callable[[str], FlagRules | None]


def rules_of(
    flag: str,
    telemetry: TelemetryPlan | None,
    version: int,
    timeline: tuple[tuple[int, int], ...] = (),
    *,
    failures: bool = False,
) -> FlagRules:
    """The rules of ``flag`` from its plan's ``telemetry`` settings (None: the defaults)."""
    settings = telemetry if telemetry is not None else TelemetryPlan()
    return FlagRules(
        flag=flag,
        version=version,
        timeline=tuple(sorted(timeline, key=lambda entry: entry[1])),
        arms=MappingProxyType(dict(settings.variants)),
        unit_attribute=settings.unit_attribute,
        error_status_min=settings.error_status_min,
        conversions=frozenset(settings.conversions),
        conversion_value=settings.conversion_value,
        failures=failures,
    )
