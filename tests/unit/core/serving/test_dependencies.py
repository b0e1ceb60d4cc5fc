"""A plan's prerequisites as Unleash's dependent features, and what Unleash cannot express."""

from __future__ import annotations

import dataclasses

import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Backend, Stage, UnleashTarget
from controller.core.serving.dependencies import (
    Dependency,
    dependencies_of,
    dependency_of,
    dependency_problems,
    unleash_problems,
)
from controller.core.serving.serving import Applied, Serving, Verdict, desired, reconcile
from controller.core.wire import Prerequisite
from tests.unit.core.serving.test_serving import TARGET, rollout

STAGES = [Stage(percent=p) for p in (10, 100)]


@pytest.mark.parametrize(
    ("variants", "want"),
    [
        (["treatment"], Dependency("parent-feature", enabled=True)),
        (["control"], Dependency("parent-feature", enabled=False)),
        (["treatment", "control"], None),
        (["control", "treatment"], None),
    ],
)
def test_a_prerequisite_maps_onto_one_dependency(
    variants: list[str], want: Dependency | None
) -> None:
    needed = Prerequisite.model_validate({"flag": "parent", "variants": variants})
    assert dependency_of(needed, "parent-feature") == want


@pytest.mark.parametrize(
    ("dependency", "body"),
    [
        (Dependency("p", enabled=True), {"feature": "p", "enabled": True, "variants": []}),
        (Dependency("p", enabled=False), {"feature": "p", "enabled": False}),
    ],
)
def test_a_dependency_is_posted_as_unleash_documents_it(
    dependency: Dependency, body: dict[str, object]
) -> None:
    assert dependency.to_json() == body


def test_a_child_s_dependencies_name_each_parent_s_feature_sorted() -> None:
    requires = [
        Prerequisite(flag="zeta", variants=["control"]),
        Prerequisite(flag="alpha", variants=["treatment"]),
        Prerequisite(flag="any", variants=["treatment", "control"]),
    ]
    features = {"zeta": "feat-z", "alpha": "feat-a", "any": "feat-any"}
    assert dependencies_of(requires, features) == (
        Dependency("feat-a", enabled=True),
        Dependency("feat-z", enabled=False),
    )
    assert dependencies_of(None, {}) == ()


def plan(
    feature: str | None = None,
    *requires: str,
    project: str | None = None,
    environment: str | None = None,
) -> Plan:
    target = None
    if feature is not None:
        target = UnleashTarget(feature=feature, project=project, environment=environment)
    needs = [Prerequisite(flag=r, variants=["treatment"]) for r in requires] or None
    return Plan(stages=STAGES, backend=Backend(unleash=target), requires=needs)


@pytest.mark.parametrize(
    ("held", "start", "problem"),
    [
        # fits: a parent on the same Unleash without parents of its own
        ({"parent": plan("f-parent")}, plan("f-child", "parent"), None),
        # a child the controller serves may require anything: it is not Unleash's to evaluate
        ({"parent": plan(None, "x"), "x": plan()}, plan(None, "parent"), None),
        # an unknown parent is the prerequisite graph's own refusal, not this one's
        ({}, plan("f-child", "nobody"), None),
        ({"parent": plan()}, plan("f-child", "parent"), "which Unleash does not serve"),
        (
            {"parent": plan("f-parent", project="other")},
            plan("f-child", "parent"),
            "served from Unleash project other, environment (default), not project (default)",
        ),
        (
            {"parent": plan("f-parent", environment="development")},
            plan("f-child", "parent", environment="production"),
            "in the child's environment",
        ),
        (
            {"parent": plan("f-parent", "grand"), "grand": plan("f-grand")},
            plan("f-child", "parent"),
            "one level deep",
        ),
        # the start that makes a chain below an Unleash child: the parent gains a parent
        (
            {"child": plan("f-child", "start"), "grand": plan("f-grand")},
            plan("f-start", "grand"),
            "child is served by Unleash (feature f-child) and requires start, which requires",
        ),
    ],
)
def test_what_unleash_cannot_express_is_refused_at_start(
    held: dict[str, Plan], start: Plan, problem: str | None
) -> None:
    problems = unleash_problems("start", start, held)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1, problems
        assert problem in problems[0]


def test_a_start_is_refused_for_its_own_problems_not_for_those_of_flags_held() -> None:
    held = {"old-child": plan("f-old", "elsewhere"), "elsewhere": plan()}
    assert unleash_problems("start", plan("f-start"), held) == []
    assert len(dependency_problems(held)) == 1


def test_flags_of_other_environments_are_neither_parents_nor_children() -> None:
    held = {"parent@staging": plan(), "parent": plan("f-parent")}
    assert unleash_problems("child", plan("f-child", "parent"), held) == []
    assert unleash_problems("child@staging", plan("f-child", "parent"), held) != []


DEPS = (Dependency("f-parent", enabled=True),)


def test_dependencies_are_part_of_what_is_desired_and_kept_in_the_record() -> None:
    want = desired(rollout(), TARGET, dependencies=DEPS)
    assert want is not None
    assert want.dependencies == DEPS
    record = Applied("r1", applied=want)
    assert Applied.from_json(record.to_json()) == record
    off = desired(rollout(), TARGET)
    assert off is not None
    assert off != want


def test_missing_dependencies_are_written_not_taken_for_drift() -> None:
    want = desired(rollout(), TARGET, dependencies=DEPS)
    assert want is not None
    bare = dataclasses.replace(want, dependencies=())
    assert reconcile(rollout(), want, bare, None, TARGET) == (Verdict.WRITE, [])
    assert reconcile(rollout(), want, bare, Applied("r1", intent=want), TARGET)[0] is Verdict.WRITE


@pytest.mark.parametrize(
    ("actual", "shown"),
    [
        ((), "[f-parent enabled] to []"),
        ((Dependency("f-parent", enabled=False),), "to [f-parent disabled]"),
        ((Dependency("f-parent", True, ("blue",)),), "to [f-parent enabled (blue)]"),
        ((*DEPS, Dependency("other", enabled=True)), "to [f-parent enabled; other enabled]"),
    ],
)
def test_a_person_s_change_to_the_dependencies_is_drift_and_named(
    actual: tuple[Dependency, ...], shown: str
) -> None:
    want = desired(rollout(), TARGET, dependencies=DEPS)
    assert want is not None
    record = Applied("r1", applied=want)
    changed = dataclasses.replace(want, dependencies=actual)
    verdict, changes = reconcile(rollout(), want, changed, record, TARGET)
    assert verdict is Verdict.DRIFT
    assert [c for c in changes if "dependencies of new-checkout were changed" in c] == changes
    assert shown in changes[0], changes


def test_a_new_version_without_the_dependencies_rewrites_them() -> None:
    old = Serving(enabled=True, percent=25, stickiness="userId", version=2, dependencies=DEPS)
    want = desired(rollout(version=3), TARGET)
    assert want is not None
    assert want.dependencies == ()
    verdict, _ = reconcile(rollout(version=3), want, old, Applied("r1", applied=old), TARGET)
    assert verdict is Verdict.WRITE
