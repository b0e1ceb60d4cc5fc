"""Prerequisites: the pure evaluation of a flag given its parents, and the graph check."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from controller.core.reading.views import FlagStateView
from controller.core.rollouts.plan import parse_plan
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.trust.signing import StateSigner, StateVerifier, generate_key
from controller.core.wire import (
    MAX_PREREQUISITE_DEPTH,
    Arm,
    FlagState,
    FlagStatus,
    Prerequisite,
    Reason,
    assign,
    evaluate,
    find_cycle,
    graph_problems,
    parent_key,
    start_problems,
)
from controller.core.wire.flagstates import signed_bytes
from controller.daemon.outputs.rendering import flag_state_fields

T, C = "treatment", "control"


def state(
    flag: str,
    *requires: tuple[str, list[str]],
    status: FlagStatus = FlagStatus.ROLLING_OUT,
    percent: float = 100.0,
) -> FlagState:
    return FlagState.model_validate(
        {
            "v": 1,
            "type": "flag_state",
            "id": f"s-{flag}",
            "ts": 1_700_000_000_000,
            "flag": flag,
            "version": 3,
            "status": status,
            "percent": percent,
            "salt": "pepper",
            "rollout_id": f"r-{flag}",
            "stage": 1,
            "requires": [{"flag": p, "variants": v} for p, v in requires] or None,
        }
    )


def held(*states: FlagState) -> dict[str, FlagState]:
    return {s.flag: s for s in states}


def served(flag: str, states: dict[str, FlagState], unit: str = "u1") -> tuple[Arm, Reason]:
    found = evaluate(flag, states.get(flag), unit, states=states)
    return found.arm, found.reason


ON, OFF = (Arm.TREATMENT, Reason.STATIC), (Arm.CONTROL, Reason.PREREQUISITE_FAILED)

CASES = [
    # (flag evaluated, the states held, what it serves)
    ("child", held(state("child", ("parent", [T])), state("parent")), ON),
    ("child", held(state("child", ("parent", [T])), state("parent", percent=0.0)), OFF),
    ("child", held(state("child", ("parent", [C])), state("parent", percent=0.0)), ON),
    ("child", held(state("child", ("parent", [C, T])), state("parent", percent=0.0)), ON),
    # An unknown parent is not met, nor a killed one, whatever the variants listed.
    ("child", held(state("child", ("parent", [T]))), OFF),
    (
        "child",
        held(state("child", ("parent", [C])), state("parent", status=FlagStatus.KILLED)),
        OFF,
    ),
    # A rolled-back parent serves control, which meets a prerequisite listing control.
    (
        "child",
        held(state("child", ("parent", [C])), state("parent", status=FlagStatus.ROLLED_BACK)),
        ON,
    ),
    # A child that serves control anyway says so, not its prerequisites.
    (
        "child",
        held(state("child", ("parent", [T]), status=FlagStatus.KILLED)),
        (Arm.CONTROL, Reason.DISABLED),
    ),
    # Every prerequisite must be met.
    (
        "child",
        held(state("child", ("a", [T]), ("b", [T])), state("a"), state("b", percent=0.0)),
        OFF,
    ),
    # A chain of depth 3: the grandparent's failure reaches the child, even for control.
    (
        "c",
        held(
            state("c", ("b", [T])), state("b", ("a", [T])), state("a", ("root", [T])), state("root")
        ),
        ON,
    ),
    (
        "c",
        held(
            state("c", ("b", [C])),
            state("b", ("a", [T])),
            state("a", ("root", [T])),
            state("root", status=FlagStatus.KILLED),
        ),
        OFF,
    ),
    # A diamond: both sides lead to one root.
    (
        "top",
        held(
            state("top", ("l", [T]), ("r", [T])),
            state("l", ("root", [T])),
            state("r", ("root", [T])),
            state("root"),
        ),
        ON,
    ),
    (
        "top",
        held(
            state("top", ("l", [T]), ("r", [C])),
            state("l", ("root", [T])),
            state("r", ("root", [T])),
            state("root", percent=0.0),
        ),
        OFF,
    ),
    # Cycles and self-reference, should a state ever carry one: never met, never a loop.
    ("a", held(state("a", ("b", [T])), state("b", ("a", [T]))), OFF),
    ("b", held(state("a", ("b", [T])), state("b", ("a", [T]))), OFF),
    ("a", held(state("a", ("a", [T]))), OFF),
    ("x", held(state("x", ("a", [T])), state("a", ("b", [T])), state("b", ("a", [T]))), OFF),
]


@pytest.mark.parametrize(("flag", "states", "expected"), CASES)
def test_a_flag_is_served_where_its_prerequisites_are_met(
    flag: str, states: dict[str, FlagState], expected: tuple[Arm, Reason]
) -> None:
    assert served(flag, states) == expected


def test_an_unmet_prerequisite_is_no_exposure_and_says_which() -> None:
    states = held(state("child", ("parent", [T])), state("parent", percent=0.0))
    found = evaluate("child", states["child"], "u1", states=states)
    assert (found.version, found.rollout_id, found.error) == (0, None, None)
    assert found.metadata() == {"flag_version": 0}
    assert found.detail == "parent does not serve treatment"
    assert found.value is False


def test_a_prerequisite_is_evaluated_for_the_same_unit() -> None:
    states = held(state("child", ("parent", [T])), state("parent", percent=50.0))
    for unit in (f"u{i}" for i in range(200)):
        parent = assign("parent", "pepper", unit, 50.0)
        expected = ON if parent is Arm.TREATMENT else OFF
        assert served("child", states, unit) == expected


def test_a_parent_is_looked_up_in_the_childs_environment() -> None:
    states = held(
        state("child@staging", ("parent", [T])),
        state("parent@staging", percent=0.0),
        state("parent"),
    )
    assert served("child@staging", states) == OFF
    assert parent_key("child@staging", "parent") == "parent@staging"
    assert parent_key("child", "parent") == "parent"


def test_a_chain_past_the_depth_bound_is_not_met() -> None:
    length = MAX_PREREQUISITE_DEPTH + 1
    chain = [state(f"f{i}", (f"f{i + 1}", [T])) for i in range(length)]
    states = held(*chain, state(f"f{length}"))
    assert served("f0", states) == OFF
    assert served("f1", states) == ON  # its chain is exactly at the bound


def test_a_wide_deep_graph_costs_each_flag_once() -> None:
    layers = [[f"l{d}-{i}" for i in range(16)] for d in range(MAX_PREREQUISITE_DEPTH + 1)]
    states = {}
    for upper, lower in itertools.pairwise(layers):
        for flag in upper:
            states[flag] = state(flag, *((p, [T]) for p in lower))
    states |= {flag: state(flag) for flag in layers[-1]}
    assert served("l0-0", states) == ON  # 16 ** 8 paths if walked without memory


@pytest.mark.parametrize(
    "requires",
    [
        [{"flag": "a", "variants": []}],
        [{"flag": "a", "variants": ["treatment", "treatment"]}],
        [{"flag": "a", "variants": ["on"]}],
        [{"flag": "a@staging", "variants": ["treatment"]}],
        [{"flag": "a", "variants": ["treatment"]}, {"flag": "a", "variants": ["control"]}],
        [{"flag": f"f{i}", "variants": ["treatment"]} for i in range(17)],
        [{"flag": "a", "variants": ["treatment"], "extra": 1}],
        [],
    ],
)
def test_bad_prerequisites_are_refused_by_the_model(requires: list[object]) -> None:
    with pytest.raises(ValidationError):
        FlagState.model_validate({**state("x").model_dump(), "requires": requires})


def test_prerequisites_are_signed_in_the_fourth_form() -> None:
    plain = state("x").model_dump()
    required = state("x", ("a", [T, C])).model_dump()
    signed = signed_bytes(required, "k1")
    assert signed.startswith(b'["rollout-controller/flag-state/4"')
    assert signed.endswith(b'null,null,null,[["a",["treatment","control"]]]]')
    assert signed_bytes(plain, "k1") != signed
    assert Prerequisite(flag="a", variants=["control"]).variants == ["control"]


GRAPHS = [
    # (graph: each flag and the flags it requires, the problems found)
    ({"a": [], "b": ["a"], "c": ["b"], "d": ["c"]}, []),
    ({"top": ["l", "r"], "l": ["root"], "r": ["root"], "root": []}, []),
    ({"a": ["a"]}, ["a requires itself"]),
    ({"a": ["ghost"]}, ["a requires ghost, an unknown flag (no rollout of it here)"]),
    ({"a": ["b"], "b": ["a"]}, ["prerequisites form a cycle: a → b → a"]),
    (
        {"x": ["a"], "a": ["b"], "b": ["c"], "c": ["a"]},
        ["prerequisites form a cycle: a → b → c → a"],
    ),
    (
        {f"f{i}": [f"f{i + 1}"] for i in range(9)} | {"f9": []},
        [
            "f0 has a chain of 9 prerequisites (f0 → f1 → f2 → f3 → f4 → f5 → f6 → f7 → f8 → f9), "
            "deeper than 8"
        ],
    ),
    ({f"f{i}": [f"f{i + 1}"] for i in range(8)} | {"f8": []}, []),
]


@pytest.mark.parametrize(("graph", "problems"), GRAPHS)
def test_the_graph_check_names_each_problem(
    graph: dict[str, list[str]], problems: list[str]
) -> None:
    assert graph_problems(graph) == problems


def test_a_long_chain_is_checked_without_recursion() -> None:
    chain = {f"f{i}": [f"f{i + 1}"] for i in range(5_000)} | {"f5000": ["f0"]}
    cycle = find_cycle(chain)
    assert cycle is not None
    assert (len(cycle), cycle[0], cycle[-1]) == (5_002, "f0", "f0")
    assert find_cycle({f"f{i}": [f"f{i + 1}"] for i in range(5_000)} | {"f5000": []}) is None


def needs(*parents: str) -> list[Prerequisite]:
    return [Prerequisite(flag=p, variants=["treatment"]) for p in parents]


STARTS = [
    # (the flag started, what it requires, the flags held with theirs, the problems)
    ("child", needs("parent"), {"parent": []}, []),
    (
        "child",
        needs("ghost"),
        {"parent": []},
        ["child requires ghost, an unknown flag (no rollout of it here)"],
    ),
    ("a", needs("b"), {"a": [], "b": needs("a")}, ["prerequisites form a cycle: a → b → a"]),
    ("a", needs("a"), {}, ["a requires itself"]),
    ("d", needs("c"), {"c": needs("b"), "b": needs("a"), "a": []}, []),
    # Another environment's flags are neither parents nor part of a cycle.
    (
        "a@staging",
        needs("b"),
        {"b": needs("a"), "a": []},
        ["a@staging requires b@staging, an unknown flag (no rollout of it here)"],
    ),
    ("a@staging", needs("b"), {"b@staging": [], "b": needs("a"), "a": []}, []),
    # A problem the controller already held is not this start's.
    ("x", needs("y"), {"y": [], "old": needs("gone")}, []),
    (
        "x",
        needs("y"),
        {"y": needs("x"), "old": needs("gone")},
        ["prerequisites form a cycle: x → y → x"],
    ),
    # A parent starting again with a chain below it that grows too deep.
    (
        "f8",
        needs("f9"),
        {f"f{i}": needs(f"f{i + 1}") for i in range(8)} | {"f8": [], "f9": []},
        [
            "f0 has a chain of 9 prerequisites (f0 → f1 → f2 → f3 → f4 → f5 → f6 → f7 → f8 → f9), "
            "deeper than 8"
        ],
    ),
]


@pytest.mark.parametrize(("flag", "requires", "held", "problems"), STARTS)
def test_a_start_is_checked_against_the_flags_held(
    flag: str,
    requires: list[Prerequisite],
    held: dict[str, list[Prerequisite]],
    problems: list[str],
) -> None:
    assert start_problems(flag, requires, held) == problems


def _rollout(requires: object = None) -> Rollout:
    data: dict[str, object] = {"stages": [{"percent": 40}, {"percent": 100}]}
    if requires is not None:
        data["requires"] = requires
    now = datetime(2026, 11, 26, tzinfo=UTC)
    return Rollout(
        flag="child", rollout_id="r-1", plan=parse_plan(data), phase=Phase.RUNNING, stage=0,
        stage_started_at=now, salt="pepper", flag_version=3, started_at=now, updated_at=now,
    )  # fmt: skip


def test_a_plans_prerequisites_travel_signed_in_its_flag_state() -> None:
    assert "requires" not in flag_state_fields(_rollout())
    assert "requires" not in FlagStateView.model_validate(flag_state_fields(_rollout())).served()
    key, public = generate_key()
    verifier = StateVerifier({"c1": public})
    needs = [{"flag": "parent", "variants": ["treatment"]}]
    fields = StateSigner(key, "c1").sign(flag_state_fields(_rollout(needs)))
    assert fields["requires"] == needs
    served = FlagStateView.model_validate(fields).served()
    assert served["requires"] == needs

    def message(changed: dict[str, object]) -> FlagState:
        return FlagState.model_validate({"type": "flag_state", "v": 1, "id": "m", "ts": 0,
                                         **changed})  # fmt: skip

    assert verifier.problem(message(served)) is None
    assert verifier.problem(message({**served, "requires": None})) == "bad_signature"
    other = [{"flag": "parent", "variants": ["control"]}]
    assert verifier.problem(message({**served, "requires": other})) == "bad_signature"
