"""What a flag platform should serve for a rollout: serving rules, their reads, ring audiences.

Read back from a platform and compared, so that drift is seen.
"""

from controller.core.serving.dependencies import (
    Dependency,
    dependencies_of,
    dependency_of,
    dependency_problems,
    unleash_problems,
)
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
    "Dependency",
    "Serving",
    "Spec",
    "Strategy",
    "Target",
    "Verdict",
    "constraint_of",
    "dependencies_of",
    "dependency_of",
    "dependency_problems",
    "desired",
    "reconcile",
    "unleash_problems",
    "would_serve",
]
