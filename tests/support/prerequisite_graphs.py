"""Generated flag graphs with prerequisites, for the tests that check every evaluator of them
agrees: in process (``tests/unit/adapters/ofrep/test_ofrep_prerequisites.py``) and through
OpenFeature's published OFREP providers over the daemon's HTTP server
(``tests/integration/ofrep/test_ofrep_prerequisite_providers.py``)."""

from __future__ import annotations

import random

from controller.core.reading.views import FlagStateView
from controller.core.wire import FlagStatus, Prerequisite
from controller.core.wire.prerequisites import Variant

STATUSES = [FlagStatus.ROLLING_OUT] * 6 + [
    FlagStatus.COMPLETED,
    FlagStatus.PAUSED,
    FlagStatus.KILLED,
    FlagStatus.ROLLED_BACK,
    FlagStatus.INACTIVE,
]
"""The statuses a generated flag is drawn from: mostly rolling out, now and then one of each
other (a paused, killed, rolled back or inactive parent among them)."""
GHOST = "ghost"
"""The parent nobody rolls out: a prerequisite on it is never met."""


def graph(seed: int, flags: int = 12, prefix: str = "f") -> list[FlagStateView]:
    """``flags`` flag states keyed ``<prefix><i>``, each requiring up to 3 earlier flags (so
    no cycle), the first four a chain of depth 3, and now and then the unknown :data:`GHOST`.
    The prefix changes the keys only: one seed draws the same graph under any prefix."""
    rng = random.Random(seed)
    views = []
    for i in range(flags):
        parents = [i - 1] if 0 < i < 4 else rng.sample(range(i), k=min(i, rng.randint(0, 3)))
        named = [f"{prefix}{p}" for p in parents]
        if rng.random() < 0.05:
            named.append(GHOST)
        variants: list[list[Variant]] = [["treatment"], ["control"], ["treatment", "control"]]
        views.append(
            FlagStateView(
                flag=f"{prefix}{i}",
                version=rng.randint(1, 50),
                status=rng.choice(STATUSES),
                percent=rng.choice([0.0, 10.0, 50.0, 90.0, 100.0]),
                salt=f"salt{i}",
                rollout_id=f"r{i}",
                stage=0,
                requires=[
                    Prerequisite(flag=p, variants=rng.choice(variants)) for p in named
                ] or None,
            )
        )  # fmt: skip
    return views
