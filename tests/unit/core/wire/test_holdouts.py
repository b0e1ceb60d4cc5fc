"""Holdouts: the pure evaluation of a flag naming one, its signed form and the start check."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from itertools import islice

import mmh3
import pytest
from pydantic import ValidationError

from controller.core.common import ConfigError
from controller.core.reading.views import FlagStateView
from controller.core.rollouts.plan import parse_plan
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.rules import Cohort, Ring
from controller.core.trust.signing import StateSigner, StateVerifier, generate_key
from controller.core.wire import (
    Arm,
    ErrorCode,
    FlagState,
    FlagStatus,
    Holdout,
    Reason,
    assign,
    evaluate,
    held_out,
    holdout_bucket,
    holdout_conflicts,
    holdout_problems,
)
from controller.core.wire.flagstates import signed_bytes
from controller.daemon.outputs.rendering import flag_state_fields
from controller.sdk.flags import FlagBook

Q3 = {"name": "q3-2026", "percent": 2.0}


def state(
    flag: str = "checkout",
    *,
    holdout: dict[str, object] | None = Q3,
    status: FlagStatus = FlagStatus.ROLLING_OUT,
    percent: float = 50.0,
    requires: list[dict[str, object]] | None = None,
) -> FlagState:
    return FlagState.model_validate(
        {
            "v": 1,
            "type": "flag_state",
            "id": f"s-{flag}",
            "ts": 1_700_000_000_000,
            "flag": flag,
            "version": 7,
            "status": status,
            "percent": percent,
            "salt": f"salt-{flag}",
            "rollout_id": f"r-{flag}",
            "stage": 2,
            "holdout": holdout,
            "requires": requires,
        }
    )


def units(*, held: bool, count: int = 3, percent: float = 2.0) -> list[str]:
    """The first ``count`` units q3-2026 holds out (or does not) at ``percent``."""
    found = (f"u{i}" for i in range(1_000_000))
    return list(islice((u for u in found if held_out("q3-2026", percent, u) is held), count))


HELD, FREE = units(held=True)[0], units(held=False)[0]

CASES = [
    # (the state, the unit, arm, version, reason, cohort, error)
    # A held-out unit gets control at any percent, even once the rollout serves everyone.
    (state(percent=100.0), HELD, Arm.CONTROL, 7, Reason.HOLDOUT, Cohort.HOLDOUT, None),
    (state(percent=50.0), HELD, Arm.CONTROL, 7, Reason.HOLDOUT, Cohort.HOLDOUT, None),
    (
        state(percent=100.0, status=FlagStatus.COMPLETED),
        HELD,
        Arm.CONTROL,
        7,
        Reason.HOLDOUT,
        Cohort.HOLDOUT,
        None,
    ),
    (state(percent=0.0), HELD, Arm.CONTROL, 7, Reason.HOLDOUT, Cohort.HOLDOUT, None),
    # Any other unit is evaluated as without the holdout.
    (state(percent=100.0), FREE, Arm.TREATMENT, 7, Reason.STATIC, None, None),
    (
        state(percent=50.0),
        FREE,
        assign("checkout", "salt-checkout", FREE, 50.0),
        7,
        Reason.SPLIT,
        None,
        None,
    ),
    # A flag serving control to everyone says so, held out or not.
    (state(status=FlagStatus.KILLED), HELD, Arm.CONTROL, 0, Reason.DISABLED, None, None),
    (state(status=FlagStatus.ROLLED_BACK), FREE, Arm.CONTROL, 0, Reason.DISABLED, None, None),
    # The holdout hashes every unit: without a key, even a static flag is an error.
    (
        state(percent=100.0),
        None,
        Arm.CONTROL,
        0,
        Reason.ERROR,
        None,
        ErrorCode.TARGETING_KEY_MISSING,
    ),
    (state(percent=100.0, holdout=None), None, Arm.TREATMENT, 7, Reason.STATIC, None, None),
    (state(percent=100.0), 42, Arm.CONTROL, 0, Reason.ERROR, None, ErrorCode.INVALID_CONTEXT),
    # A prerequisite not met comes first: a held-out unit it stops is no holdout exposure.
    (
        state(percent=100.0, requires=[{"flag": "gone", "variants": ["treatment"]}]),
        HELD,
        Arm.CONTROL,
        0,
        Reason.PREREQUISITE_FAILED,
        None,
        None,
    ),
]


@pytest.mark.parametrize(("held", "unit", "arm", "version", "reason", "cohort", "error"), CASES)
def test_a_holdout_serves_its_units_control(
    held: FlagState,
    unit: object,
    arm: Arm,
    version: int,
    reason: Reason,
    cohort: Cohort | None,
    error: ErrorCode | None,
) -> None:
    found = evaluate(held.flag, held, unit, states={held.flag: held})
    assert (found.arm, found.version, found.reason, found.cohort, found.error) == (
        arm,
        version,
        reason,
        cohort,
        error,
    )


def test_a_held_out_unit_is_reported_as_the_holdouts_in_its_rollout() -> None:
    found = evaluate("checkout", state(percent=100.0), HELD)
    assert found.metadata() == {
        "flag_version": 7,
        "rollout_id": "r-checkout",
        "stage": 2,
        "cohort": "holdout",
    }
    assert (found.variant, found.value, found.detail) == ("control", False, "")


def test_a_holdout_holds_out_a_targeted_rollouts_units_too() -> None:
    everyone = state(percent=0.0).model_copy(update={"rings": [Ring(threshold=100_000)]})
    assert evaluate("checkout", everyone, FREE).arm is Arm.TREATMENT
    found = evaluate("checkout", everyone, HELD)
    assert (found.arm, found.reason, found.cohort) == (Arm.CONTROL, Reason.HOLDOUT, Cohort.HOLDOUT)


def test_the_holdout_bucket_is_murmur3_of_the_holdouts_name_alone() -> None:
    for unit in ("u1", "ünïcode", "x" * 256):
        expected = mmh3.hash(f"~holdout:q3-2026:{unit}".encode(), seed=0, signed=False) % 100_000
        assert holdout_bucket("q3-2026", unit) == expected
    assert held_out("q3-2026", 2.0, HELD)
    assert not held_out("q3-2026", 2.0, FREE)
    assert held_out("q3-2026", 50.0, HELD)  # a larger holdout keeps the smaller one's units


FLAGS = [
    state("checkout", percent=50.0),
    state("search", percent=10.0),
    state("banner", percent=100.0, status=FlagStatus.COMPLETED),
    state("pricing", percent=0.0).model_copy(update={"rings": [Ring(threshold=70_000)]}),
]


def test_no_held_out_unit_sees_treatment_over_100000_units() -> None:
    n, held, treated_held, treated_by_own_bucket = 100_000, 0, 0, 0
    states = {s.flag: s for s in FLAGS}
    for i in range(n):
        unit = f"user-{i}"
        found = [evaluate(s.flag, s, unit, states=states) for s in FLAGS]
        if held_out("q3-2026", 2.0, unit):
            held += 1
            treated_held += sum(f.arm is Arm.TREATMENT for f in found)
            assert {f.reason for f in found} == {Reason.HOLDOUT}
            treated_by_own_bucket += (
                assign("checkout", "salt-checkout", unit, 50.0) is Arm.TREATMENT
            )
        else:
            assert not any(f.reason is Reason.HOLDOUT for f in found)
            assert found[2].arm is Arm.TREATMENT  # everyone else has the completed flag
    assert treated_held == 0
    # The share held out is 2% within four standard errors.
    assert abs(held / n - 0.02) < 4 * math.sqrt(0.02 * 0.98 / n)
    # The holdout is hashed apart from each flag's buckets: its units would have been split
    # 50/50 by the flag's own bucketing, within four standard errors.
    assert abs(treated_by_own_bucket / held - 0.5) < 4 * math.sqrt(0.25 / held)


def test_the_controller_and_the_sdk_agree_on_signed_states_with_a_holdout() -> None:
    key, public = generate_key()
    signer = StateSigner(key, "c1")
    signed = [signer.sign(s.model_dump(mode="json", exclude_none=True)) for s in FLAGS]
    book = FlagBook([FlagState.model_validate(fields) for fields in signed], keys={"c1": public})
    assert book.rejected == 0
    views = {view.flag: view for view in map(FlagStateView.model_validate, signed)}
    for i in range(5_000):
        unit = f"user-{i}"
        for flag, view in views.items():
            ours = evaluate(flag, view, unit, states=views)
            assert book.evaluate(flag, unit) == ours


@pytest.mark.parametrize(
    "holdout",
    [
        {"name": "q3-2026", "percent": 0},
        {"name": "q3-2026", "percent": 50.5},
        {"name": "q3-2026", "percent": float("nan")},
        {"name": "Q3", "percent": 2},
        {"name": "", "percent": 2},
        {"name": "q" * 65, "percent": 2},
        {"name": "q3-2026"},
        {"name": "q3-2026", "percent": 2, "salt": "x"},
    ],
)
def test_bad_holdouts_are_refused_by_the_model(holdout: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        state(holdout=holdout)
    with pytest.raises(ConfigError, match="holdout"):
        parse_plan({"stages": [{"percent": 50}], "holdout": holdout})


def test_a_holdout_is_signed_in_the_fifth_form() -> None:
    named = state().model_dump()
    signed = signed_bytes(named, "k1")
    assert signed.startswith(b'["rollout-controller/flag-state/5"')
    assert signed.endswith(b'null,null,null,null,["q3-2026",2000]]')
    assert signed_bytes(state(holdout=None).model_dump(), "k1").startswith(
        b'["rollout-controller/flag-state/1"'
    )
    both = state(requires=[{"flag": "a", "variants": ["treatment"]}]).model_dump()
    assert signed_bytes(both, "k1").endswith(b'null,[["a",["treatment"]]],["q3-2026",2000]]')


def _rollout(holdout: object = None) -> Rollout:
    data: dict[str, object] = {"stages": [{"percent": 40}, {"percent": 100}]}
    if holdout is not None:
        data["holdout"] = holdout
    now = datetime(2026, 11, 26, tzinfo=UTC)
    return Rollout(
        flag="checkout", rollout_id="r-1", plan=parse_plan(data), phase=Phase.RUNNING, stage=0,
        stage_started_at=now, salt="pepper", flag_version=3, started_at=now, updated_at=now,
    )  # fmt: skip


def test_a_plans_holdout_travels_signed_in_its_flag_state() -> None:
    assert "holdout" not in flag_state_fields(_rollout())
    assert "holdout" not in FlagStateView.model_validate(flag_state_fields(_rollout())).served()
    key, public = generate_key()
    verifier = StateVerifier({"c1": public})
    fields = StateSigner(key, "c1").sign(flag_state_fields(_rollout(Q3)))
    assert fields["holdout"] == Q3
    served = FlagStateView.model_validate(fields).served()
    assert served["holdout"] == Q3

    def message(changed: dict[str, object]) -> FlagState:
        return FlagState.model_validate({"type": "flag_state", "v": 1, "id": "m", "ts": 0,
                                         **changed})  # fmt: skip

    assert verifier.problem(message(served)) is None
    for forged in (None, {**Q3, "percent": 1.0}, {**Q3, "name": "q4-2026"}):
        assert verifier.problem(message({**served, "holdout": forged})) == "bad_signature"


Q3_AT_1 = Holdout(name="q3-2026", percent=1.0)
Q3_AT_2 = Holdout.model_validate(Q3)

STARTS = [
    # (the flag started, its holdout, the holdouts of the flags held, the problems)
    ("checkout", Q3_AT_2, {"search": Q3_AT_2, "banner": None}, []),
    ("checkout", None, {"search": Q3_AT_1}, []),
    (
        "checkout",
        Q3_AT_2,
        {"search": Q3_AT_1, "banner": Q3_AT_2},
        [
            "holdout q3-2026 is 1% on search, not 2%: every flag naming it must give it the "
            "same percent"
        ],
    ),
    # The flag's own earlier plan is not another flag; other environments hold their own.
    ("checkout", Q3_AT_2, {"checkout": Q3_AT_1}, []),
    ("checkout@staging", Q3_AT_2, {"search": Q3_AT_1}, []),
    (
        "checkout@staging",
        Q3_AT_2,
        {"search@staging": Q3_AT_1},
        [
            "holdout q3-2026 is 1% on search, not 2%: every flag naming it must give it the "
            "same percent"
        ],
    ),
    ("checkout", Q3_AT_2, {"search": Holdout(name="q4-2026", percent=1.0)}, []),
]


@pytest.mark.parametrize(("flag", "holdout", "held", "problems"), STARTS)
def test_a_start_naming_a_holdout_is_checked_against_the_flags_held(
    flag: str, holdout: Holdout | None, held: dict[str, Holdout | None], problems: list[str]
) -> None:
    assert holdout_problems(flag, holdout, held) == problems


CONFLICTS = [
    # (each flag of one environment with its holdout, the problems)
    ({"a": Q3_AT_2, "b": Q3_AT_2, "c": None}, []),
    (
        {"a": Q3_AT_2, "b": Q3_AT_1, "c": Q3_AT_2},
        [
            "holdout q3-2026 is given 1% (b) and 2% (a, c): every flag naming it must give it "
            "the same percent"
        ],
    ),
    ({"a": Q3_AT_2, "b": Holdout(name="q4-2026", percent=1.0)}, []),
]


@pytest.mark.parametrize(("named", "problems"), CONFLICTS)
def test_a_directorys_flags_give_each_holdout_one_percent(
    named: dict[str, Holdout | None], problems: list[str]
) -> None:
    assert holdout_conflicts(named) == problems


def test_a_plan_served_by_unleash_cannot_name_a_holdout_yet() -> None:
    unleash = {"unleash": {"feature": "new-checkout"}}
    stages = [{"percent": 1}, {"percent": 100}]
    with pytest.raises(ConfigError, match="holdouts are not written to Unleash yet"):
        parse_plan({"stages": stages, "backend": unleash, "holdout": Q3})
    assert parse_plan({"stages": stages, "holdout": Q3}).holdout == Holdout.model_validate(Q3)
