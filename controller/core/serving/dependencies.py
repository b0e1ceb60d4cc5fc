"""A plan's prerequisites as Unleash's dependent features, and where they cannot be.

Unleash serves a feature to a unit only where each of its *dependencies*
holds: the parent feature, evaluated for the same unit in the same
environment, is enabled (``enabled: true``, optionally one of the parent's
``variants``) or disabled (``enabled: false``). The controller serves each
rollout as one feature whose ``flexibleRollout`` strategy gives treatment to
the units it enables, so a prerequisite maps onto one dependency
(:func:`dependency_of`):

- ``[treatment]``: ``enabled: true`` (no variants: the controller's features have none);
- ``[control]``: ``enabled: false``;
- ``[treatment, control]``: no dependency; every unit a parent serves meets it, and
  the start checks that the parent is rolled out on the same Unleash.

What Unleash cannot express is refused before a start (:func:`unleash_problems`):
a parent not served by Unleash, or served from another project or environment
(a dependency names a feature of the child's project, evaluated in the SDK's
environment), and chains (a parent that requires flags of its own, or a child
that other Unleash flags require): Unleash keeps dependencies one level deep.
Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.core.common import split
from controller.core.rollouts import Plan, UnleashTarget
from controller.core.wire import JsonObject, Prerequisite, parent_key


@dataclass(frozen=True, slots=True, order=True)
class Dependency:
    """One dependency of a feature on a parent feature, as Unleash keeps it."""

    feature: str
    enabled: bool
    variants: tuple[str, ...] = ()
    """The parent's variants that meet it (only with ``enabled``); empty: any."""

    def to_json(self) -> JsonObject:
        """The body of ``POST .../features/{child}/dependencies``."""
        body: JsonObject = {"feature": self.feature, "enabled": self.enabled}
        if self.enabled:
            body["variants"] = [*self.variants]
        return body

    def __str__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"{self.feature} {state}" + (
            f" ({', '.join(self.variants)})" if self.variants else ""
        )


def dependency_of(needed: Prerequisite, parent_feature: str) -> Dependency | None:
    """The dependency that serves ``needed`` on Unleash, the parent's feature named; None
    where every unit the parent serves meets it (``[treatment, control]``)."""
    listed = set(needed.variants)
    if listed == {"treatment", "control"}:
        return None
    return Dependency(feature=parent_feature, enabled=listed == {"treatment"})


def dependencies_of(
    requires: Sequence[Prerequisite] | None, parent_features: Mapping[str, str]
) -> tuple[Dependency, ...]:
    """The dependencies a child writes, sorted, given each parent flag's feature name
    (keyed by the parent's own flag key, as ``requires`` names it)."""
    found = (dependency_of(n, parent_features[n.flag]) for n in requires or ())
    return tuple(sorted(d for d in found if d is not None))


def unleash_problems(flag: str, plan: Plan, plans: Mapping[str, Plan]) -> list[str]:
    """What Unleash's dependent features cannot express in serving ``flag`` (its stored key)
    with ``plan`` while the flags ``plans`` holds (stored keys) are rolled out; in words,
    empty when nothing. Only flags served by Unleash are checked: a child's prerequisites
    on Unleash, and ``flag`` as the parent of an Unleash child. An Unleash target's
    project or environment left out is the settings' default, the same for every plan."""
    where = split(flag)[1]
    here = {k: p for k, p in plans.items() if split(k)[1] == where and k != flag}
    return dependency_problems({**here, flag: plan}, involving=flag)


def dependency_problems(plans: Mapping[str, Plan], *, involving: str | None = None) -> list[str]:
    """What Unleash's dependent features cannot express among ``plans`` (one environment's
    flags by key); only the prerequisites to or from ``involving``, when it is named."""
    problems: list[str] = []
    for child, plan in sorted(plans.items()):
        served = plan.unleash
        if served is None:
            continue
        for needed in plan.requires or ():
            parent = parent_key(child, needed.flag)
            if involving is not None and involving not in (child, parent):
                continue  # a problem of the flags held, not of this start
            problem = _edge_problem(child, served, parent, plans.get(parent))
            if problem is not None:
                problems.append(problem)
    return problems


def _edge_problem(
    child: str, served: UnleashTarget, parent: str, parent_plan: Plan | None
) -> str | None:
    name = split(child)[0]
    of = f"{name} is served by Unleash (feature {served.feature}) and requires {split(parent)[0]}"
    if parent_plan is None:
        return None  # an unknown parent is the prerequisite graph's own refusal
    if parent_plan.unleash is None:
        return f"{of}, which Unleash does not serve: a dependency can only name an Unleash feature"
    if (where := _place(parent_plan.unleash)) != _place(served):
        return (
            f"{of}, served from Unleash {_shown(where)}, not {_shown(_place(served))}: a"
            " dependency names a feature of the child's project, in the child's environment"
        )
    if parent_plan.requires:
        return (
            f"{of}, which requires flags of its own: Unleash keeps dependencies one level deep"
            " (a parent cannot have parents)"
        )
    return None


def _place(target: UnleashTarget) -> tuple[str | None, str | None]:
    return target.project, target.environment


def _shown(place: tuple[str | None, str | None]) -> str:
    project, environment = place
    return f"project {project or '(default)'}, environment {environment or '(default)'}"
