"""What a flag platform should serve for a rollout: serving rules, their reads, ring audiences.

Read back from a platform and compared, so that drift is seen. And the versions a flag is
served under, which only grow, even across a store that lost them.
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
from controller.core.serving.versions import VersionFloors, next_version, versions_in

__all__ = [
    "STRATEGY",
    "Applied",
    "Dependency",
    "Serving",
    "Spec",
    "Strategy",
    "Target",
    "Verdict",
    "VersionFloors",
    "constraint_of",
    "dependencies_of",
    "dependency_of",
    "dependency_problems",
    "desired",
    "next_version",
    "reconcile",
    "unleash_problems",
    "versions_in",
    "would_serve",
]
