"""Which arm each recent unit was exposed to, per flag: the OpenFeature provider's memory.

The provider emits an exposure once per unit and flag version (unless told
to emit every one) and attributes a unit's conversions to the arms it saw.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from controller.core.rules import Cohort
from controller.core.wire import Arm

Exposed = tuple[Arm, int, Cohort | None]
"""The arm, flag version and cohort a unit was exposed to."""


class Exposures:
    """Which arm and flag version each recent unit was exposed to, per flag (bounded, LRU).

    Bounded by ``max_units``: the least recently exposed units are forgotten,
    so a forgotten unit may be exposed (and counted) again, and its later
    conversions are not attributed.
    """

    def __init__(self, max_units: int) -> None:
        if max_units < 1:
            raise ValueError("max_units must be positive")
        self._max = max_units
        self._units: OrderedDict[str, dict[str, Exposed]] = OrderedDict()
        self._lock = threading.Lock()

    def record(
        self, unit: str, flag: str, arm: Arm, version: int, cohort: Cohort | None = None
    ) -> bool:
        """Remember the exposure; True if it is new for this unit, flag and version."""
        with self._lock:
            flags = self._units.get(unit)
            if flags is None:
                flags = self._units[unit] = {}
                if len(self._units) > self._max:
                    self._units.popitem(last=False)
            else:
                self._units.move_to_end(unit)
            new = flags.get(flag) != (arm, version, cohort)
            flags[flag] = (arm, version, cohort)
            return new

    def of(self, unit: str) -> dict[str, Exposed]:
        with self._lock:
            return dict(self._units.get(unit, {}))
