"""Prerequisites: a flag served only where other flags serve given variants.

A rollout's plan may say that its flag requires other flags of its
environment to serve given variants (``requires: [{flag: new-checkout,
variants: [treatment]}]``); the flag state carries the list to every client.
A prerequisite is *met* for a unit when the parent flag, evaluated for the
same unit and context, serves one of the listed variants; a parent that is
unknown, killed, fails to evaluate or fails a prerequisite of its own is not
met, whichever variants are listed. A flag with an unmet prerequisite serves
control (``PREREQUISITE_FAILED``, flag version 0: no exposure of its rollout).
The walk itself is in :mod:`controller.core.wire.evaluation`.

A parent is named by its own key and lives in the child's environment
(:func:`parent_key`). Bounds: at most :data:`MAX_PREREQUISITES` on a flag,
and chains at most :data:`MAX_PREREQUISITE_DEPTH` flags long below any flag.
:func:`graph_problems` is the check the controller and ``rolloutctl`` make
before a rollout starts: a flag requiring itself, a flag nobody rolls out, a
cycle, a chain too deep. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from controller.core.common import PlainFlagKey, scoped, split

MAX_PREREQUISITES = 16
"""The most prerequisites one flag may have."""
MAX_PREREQUISITE_DEPTH = 8
"""The longest chain of prerequisites below a flag (a requires b requires c: 2)."""


Variant = Literal["treatment", "control"]
"""A variant a parent may serve: an arm's name."""


class Prerequisite(BaseModel):
    """A parent flag and the variants it must serve a unit for the child to be served."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flag: PlainFlagKey = Field(description="The parent flag's own key, in the same environment.")
    variants: Annotated[list[Variant], Field(min_length=1, max_length=2)] = Field(
        description="The parent's variants (`treatment`, `control`) that meet the prerequisite."
    )

    @model_validator(mode="after")
    def _variants_once(self) -> Self:
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"prerequisite {self.flag}: a variant is listed twice")
        return self


def _each_parent_once(requires: list[Prerequisite]) -> list[Prerequisite]:
    seen: set[str] = set()
    for needed in requires:
        if needed.flag in seen:
            raise ValueError(f"prerequisite {needed.flag} is listed twice")
        seen.add(needed.flag)
    return requires


Requires = Annotated[
    list[Prerequisite],
    Field(min_length=1, max_length=MAX_PREREQUISITES),
    AfterValidator(_each_parent_once),
]
"""A flag's prerequisites, each parent named once."""


def parent_key(child: str, parent: str) -> str:
    """The stored key of ``parent`` in the environment of the flag keyed ``child``."""
    return scoped(parent, split(child)[1], "")


def met(needed: Prerequisite, variant: str | None) -> bool:
    """Whether a parent serving ``variant`` meets ``needed`` (None: it serves nothing that
    counts: unknown, killed, in error, or failing a prerequisite of its own)."""
    return variant is not None and variant in needed.variants


PrerequisiteGraph = Mapping[str, Sequence[str]]
"""Every flag known in one environment, each with the flags it requires (maybe none)."""


def graph_problems(graph: PrerequisiteGraph) -> list[str]:
    """What is wrong with the prerequisites of ``graph``, in words; empty when nothing is.

    A flag requiring itself or a flag the graph does not know is named first;
    then one cycle, if there is one; else each flag whose chain of prerequisites
    is deeper than :data:`MAX_PREREQUISITE_DEPTH`.
    """
    problems = [
        _edge_problem(flag, parent)
        for flag in sorted(graph)
        for parent in graph[flag]
        if parent == flag or parent not in graph
    ]
    looped = {flag: [p for p in parents if p != flag] for flag, parents in graph.items()}
    if (cycle := find_cycle(looped)) is not None:
        return [*problems, f"prerequisites form a cycle: {' → '.join(cycle)}"]
    return problems + [
        f"{flag} has a chain of {len(chain) - 1} prerequisites ({' → '.join(chain)}), "
        f"deeper than {MAX_PREREQUISITE_DEPTH}"
        for flag, chain in sorted(deepest_chains(looped).items())
        if len(chain) - 1 > MAX_PREREQUISITE_DEPTH
    ]


def start_problems(
    flag: str, requires: Sequence[Prerequisite] | None, held: Mapping[str, Sequence[Prerequisite]]
) -> list[str]:
    """What starting the flag keyed ``flag`` with ``requires`` would break in its
    environment, given every flag held (key -> its prerequisites): the problems of the graph
    with the start in it that the graph without it does not have. Keys are stored keys
    (``checkout@staging``), so a flag of another environment is never a parent."""
    where = split(flag)[1]
    graph = {
        key: [parent_key(key, needed.flag) for needed in wanted]
        for key, wanted in held.items()
        if split(key)[1] == where
    }
    before = set(graph_problems({**graph, flag: graph.get(flag, [])}))
    graph[flag] = [parent_key(flag, needed.flag) for needed in requires or ()]
    return [problem for problem in graph_problems(graph) if problem not in before]


def _edge_problem(flag: str, parent: str) -> str:
    if parent == flag:
        return f"{flag} requires itself"
    return f"{flag} requires {parent}, an unknown flag (no rollout of it here)"


def find_cycle(graph: PrerequisiteGraph) -> list[str] | None:
    """A cycle of ``graph`` as the flags along it, the first repeated at the end; None
    when there is none. Iterative, so a long chain cannot exhaust the stack."""
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path, on_path = [root], {root}
        stack = [iter(graph.get(root, ()))]
        while stack:
            parent = next(stack[-1], None)
            if parent is None:
                stack.pop()
                done.add(left := path.pop())
                on_path.discard(left)
            elif parent in on_path:
                return [*path[path.index(parent) :], parent]
            elif parent not in done and parent in graph:
                path.append(parent)
                on_path.add(parent)
                stack.append(iter(graph[parent]))
    return None


def deepest_chains(graph: PrerequisiteGraph) -> dict[str, list[str]]:
    """Each flag's longest chain of prerequisites, the flag first; ``graph`` has no cycle."""
    chains: dict[str, list[str]] = {}
    for root in sorted(graph):
        stack = [root]
        while stack:
            flag = stack[-1]
            waiting = [p for p in graph[flag] if p in graph and p not in chains]
            if waiting:
                stack.extend(waiting)
                continue
            stack.pop()
            below = max((chains[p] for p in graph[flag] if p in graph), key=len, default=[])
            chains[flag] = [flag, *below]
    return chains
