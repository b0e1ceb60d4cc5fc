"""What a flag platform should serve for a rollout: serving rules, their reads, ring audiences.

Read back from a platform and compared, so that drift is seen.
"""

from controller.core.serving.reads import Strategy, would_serve
from controller.core.serving.rings import Spec, constraint_of
from controller.core.serving.serving import (
    STRATEGY,
    Applied,
    Serving,
    Target,
    Verdict,
    desired,
    reconcile,
)

__all__ = [
    "STRATEGY",
    "Applied",
    "Serving",
    "Spec",
    "Strategy",
    "Target",
    "Verdict",
    "constraint_of",
    "desired",
    "reconcile",
    "would_serve",
]
