"""Assignment of units to arms: the one function apps, simulator and tests share.

``bucket = murmur3_x86_32(f"{flag}:{salt}:{unit}", seed=0) % 100_000`` and a
unit is in treatment iff ``bucket < round(percent * 1000)``. Percent therefore
has 0.001% resolution, and raising it only moves control units into treatment.
"""

from __future__ import annotations

import mmh3

from controller.core.messages import Arm

BUCKETS = 100_000


def bucket(flag: str, salt: str, unit: str) -> int:
    """The unit's bucket in ``0..99_999`` for this flag and salt."""
    return mmh3.hash(f"{flag}:{salt}:{unit}", seed=0, signed=False) % BUCKETS


def assign(flag: str, salt: str, unit: str, percent: float) -> Arm:
    """The arm a unit is served when ``percent`` of units get treatment."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be within 0..100, got {percent}")
    threshold = round(percent * 1000)
    return Arm.TREATMENT if bucket(flag, salt, unit) < threshold else Arm.CONTROL
