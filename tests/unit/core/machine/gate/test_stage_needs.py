"""What a waiting stage still needs, as a table: the rollout, the gate's hold and the time in,
the summary's lines out; then the countdown's edge cases and the sample-ratio word."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

import pytest

from controller.core.common import countdown_text
from controller.core.machine.gate import evaluate
from controller.core.reading import describe, srm_word, stage_needs
from controller.core.reading.stage_power import NO_UNITS_AFTER, StageNeeds
from controller.core.rollouts import Rollout, Verdict, VerdictKind
from controller.core.rollouts.plan_parts import Guardrail, Limits, Stage
from controller.core.rollouts.rollout import Phase
from controller.core.wire import AudienceRing, EvidenceWait, GateEvidence
from tests.unit.console.test_console_widening import published_test
from tests.unit.core.machine.gate.test_gate import T0, arm, data, plan, rollout

STAGES = [
    Stage(percent=50, min_duration=timedelta(minutes=30), min_units_per_arm=300),
    Stage(percent=100, min_duration=timedelta(0)),
]
WAITING = "evidence incomplete: partitions 3, 4 of rollout.events not yet counted"
UNTESTED = "error_rate not yet tested: 12 of 30 events in control"
TARGETED = {
    "stages": [
        Stage.model_validate(
            {"percent": 50, "min_duration": "30m", "min_units_per_arm": 300,
             "audience": 'country in ["NZ"]'}
        ),
        STAGES[1],
    ]
}  # fmt: skip
RING = AudienceRing(rollout=None, stage='country in ["NZ"]', percent=50, compared="units")
SPREAD = {"requests": 20_000, "errors": 200, "exposures": 20_000, "conversions": 0}
GATING = [Guardrail(metric="error_rate"), Guardrail(metric="latency_p95", dry_run=True)]


def running(**over: Any) -> Rollout:
    """A rollout at its first stage (30 min, 300 units per arm), ``over`` its fields."""
    changes = {"stages": STAGES, "guardrails": GATING, **over.pop("plan", {})}
    return rollout(plan(**changes)).model_copy(update=over)


def hold(
    units: tuple[int, int] | None = (400, 400),
    untested: tuple[str, ...] = (),
    kind: VerdictKind = VerdictKind.HOLD,
    **parts: Any,
) -> Verdict:
    """The gate's verdict on the stage: ``units`` in treatment and control, and ``parts``."""
    if units is not None:
        parts["arms"] = {
            name: {"units": n, **SPREAD}
            for name, n in zip(("treatment", "control"), units, strict=True)
        }
    return Verdict(kind, "held", None, GateEvidence.model_validate(parts), untested=untested)


def at(minutes: float) -> Any:
    return T0 + timedelta(minutes=minutes)


CASES: list[tuple[str, Rollout, Verdict | None, float, list[str] | None]] = [
    (
        "the minimum time and units both outstanding",
        running(),
        hold((153, 171)),
        27.5,
        [
            "minimum stage time: 2 min 30 s left",
            "units per arm: 153 of 300 (treatment 153, control 171)",
        ],
    ),
    ("one second left", running(), hold(), 30 - 1 / 60, ["minimum stage time: 1 s left"]),
    (
        "a part of a second left counts up",
        running(),
        hold(),
        30 - 0.3 / 60,
        ["minimum stage time: 1 s left"],
    ),
    ("the time reached, units met: nothing counted holds", running(), hold(), 30, None),
    (
        "units short by one",
        running(),
        hold((299, 1000)),
        31,
        ["units per arm: 299 of 300 (treatment 299, control 1000)"],
    ),
    (
        "partitions to count",
        running(),
        hold(incomplete=EvidenceWait(waiting=WAITING)),
        31,
        [WAITING],
    ),
    (
        "a guardrail not yet tested, as the gate says",
        running(),
        hold(untested=(UNTESTED,)),
        31,
        [UNTESTED],
    ),
    (
        "everything at once, in the gate's order",
        running(),
        hold((10, 20), (UNTESTED,), incomplete=EvidenceWait(waiting=WAITING)),
        0,
        [
            "minimum stage time: 30 min left",
            "units per arm: 10 of 300 (treatment 10, control 20)",
            WAITING,
            UNTESTED,
        ],
    ),
    (
        "a ring that has seen no unit for a minute: warned first",
        running(plan=TARGETED),
        hold((0, 0), audience=RING),
        NO_UNITS_AFTER.total_seconds() / 60,
        [
            'no units seen in this ring (country in ["NZ"]): check that the apps\' SDK loads'
            " segments and sends the attributes the ring's rule reads",
            "minimum stage time: 29 min left",
            "units per arm: 0 of 300 (treatment 0, control 0)",
        ],
    ),
    (
        "a ring at 100% whose control is everyone outside it, none served treatment: warned",
        running(plan=TARGETED),
        hold((0, 1260), audience=RING),
        NO_UNITS_AFTER.total_seconds() / 60,
        [
            'no units seen in this ring (country in ["NZ"]): check that the apps\' SDK loads'
            " segments and sends the attributes the ring's rule reads",
            "minimum stage time: 29 min left",
            "units per arm: 0 of 300 (treatment 0, control 1260)",
        ],
    ),
    (
        "a ring with no unit yet, too early to tell",
        running(plan=TARGETED),
        hold((0, 0), audience=RING),
        0.5,
        [
            "minimum stage time: 29 min 30 s left",
            "units per arm: 0 of 300 (treatment 0, control 0)",
        ],
    ),
    (
        "an untargeted stage with no unit is no ring to warn of",
        running(),
        hold((0, 0)),
        31,
        ["units per arm: 0 of 300 (treatment 0, control 0)"],
    ),
    (
        "a ring with a unit in one arm only",
        running(plan=TARGETED),
        hold((1, 0), audience=RING),
        31,
        ["units per arm: 0 of 300 (treatment 1, control 0)"],
    ),
    (
        "no concurrent control: treatment alone is counted",
        running(plan={"limits": Limits(error_rate=0.01)}, stage=1),
        hold((5, 0)),
        31,
        ["units in treatment: 5 of 150"],
    ),
    ("the gate moves it on", running(), hold((1, 1), kind=VerdictKind.ADVANCE), 0, None),
    ("the gate rolls it back", running(), hold((1, 1), kind=VerdictKind.ROLLBACK), 0, None),
    ("paused", running(phase=Phase.PAUSED), hold((1, 1)), 0, None),
    ("not gated", running(), None, 0, None),
]


@pytest.mark.parametrize(
    ("r", "verdict", "minutes", "lines"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_what_a_waiting_stage_still_needs(
    r: Rollout, verdict: Verdict | None, minutes: float, lines: list[str] | None
) -> None:
    needs = stage_needs(r, verdict, at(minutes))
    assert (None if needs is None else needs.lines) == lines


def test_the_parts_are_typed_for_scripts() -> None:
    verdict = hold((153, 171), (UNTESTED,), incomplete=EvidenceWait(waiting=WAITING))
    needs = stage_needs(running(), verdict, at(27.5))
    assert needs is not None
    assert needs.min_time_left_s == 150.0
    assert needs.units is not None
    assert (needs.units.fewest, needs.units.needed, needs.units.control) == (153, 300, 171)
    assert (needs.partitions, needs.untested, needs.empty_ring) == (WAITING, [UNTESTED], None)
    assert StageNeeds.model_validate(needs.model_dump(mode="json")) == needs


def with_tests(**tests: Any) -> Verdict:
    return hold(guardrails=tests, untested=(UNTESTED,))


@pytest.mark.parametrize(
    ("tests", "said"),
    [
        ({"error_rate": published_test(variance=4e-6, n=20_000)}, "more at the current traffic"),
        ({"error_rate": published_test(variance=4e-8, n=20_000)}, "detectable now"),
        ({"latency_p95": published_test(variance=4e-6, n=20_000)}, None),  # dry run
        ({"error_rate": published_test(variance=0.0)}, None),  # no figure without a spread
        ({"error_rate": "insufficient data"}, None),
    ],
)
def test_how_long_the_traffic_needs_to_detect_a_regression(
    tests: dict[str, Any], said: str | None
) -> None:
    needs = stage_needs(running(), with_tests(**tests), at(10))
    assert needs is not None
    if said is None:
        assert needs.to_detect is None
        assert needs.lines == ["minimum stage time: 20 min left", UNTESTED]
        return
    assert needs.to_detect is not None
    assert needs.to_detect.guardrail == "error_rate"
    assert needs.to_detect.effect == 0.5
    assert re.fullmatch(
        r"\+50% on error rate: (detectable now|detectable in .+ more at the current traffic"
        r"|not detectable within 30 days at the current traffic)",
        needs.lines[-1],
    ), needs.lines[-1]
    assert said in needs.lines[-1]
    assert needs.lines[:-1] == ["minimum stage time: 20 min left", UNTESTED]


def test_the_gate_says_why_each_guardrail_waits_and_the_view_serves_it() -> None:
    r = running()
    few = data(arm(units=153, requests=12, exposures=12), arm(units=171, requests=12, exposures=12))
    verdict = evaluate(r, few, at(27.5))
    assert verdict.kind is VerdictKind.HOLD
    assert verdict.untested == ("error_rate not yet tested: 12 of 150 events in treatment",)
    view = describe(r, verdict, at(27.5))
    assert view.needs is not None
    assert view.needs.lines == [
        "minimum stage time: 2 min 30 s left",
        "units per arm: 153 of 300 (treatment 153, control 171)",
        "error_rate not yet tested: 12 of 150 events in treatment",
    ]
    assert StageNeeds.model_validate(view.served()["needs"]) == view.needs  # as served


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "0 s"),
        (-5, "0 s"),
        (math.nan, "0 s"),
        (0.2, "1 s"),
        (59, "59 s"),
        (59.5, "1 min"),
        (60, "1 min"),
        (150, "2 min 30 s"),
        (3599, "59 min 59 s"),
        (3599.5, "1 h"),
        (3601, "1 h 1 min"),
        (5400, "1 h 30 min"),
        (86_399, "1 d"),
        (90_000, "1 d 1 h"),
        (365 * 86_400, "365 d"),
    ],
)
def test_a_countdown_reads_in_two_units_at_most_rounded_up(seconds: float, said: str) -> None:
    assert countdown_text(seconds) == said


@pytest.mark.parametrize(
    ("flagged", "treatment", "control", "expected", "said"),
    [
        (False, 0, 0, None, "no units yet"),
        (False, 0, None, None, "no units yet"),  # an older gate gave no control count
        (False, None, None, None, "ok"),  # nothing counted is not taken as 0
        (False, 5, 0, None, "ok"),
        (False, 95, 105, None, "ok"),
        (False, 95, 105, 100.0, "ok"),
        (True, 0, 40, 20.0, "mismatch"),
        # a stage at 100% (a ring with no control): the other arm's units are outside it
        (False, 0, 1260, 1260.0, "not checked: one arm"),
        (False, 300, 12, 312.0, "not checked: one arm"),
        (False, 12, 300, 0.0, "not checked: one arm"),
        (False, 0, 0, 0.0, "no units yet"),
    ],
)
def test_the_sample_ratio_check_reads_no_units_yet_on_0_against_0_and_one_arm_unchecked(
    flagged: bool,
    treatment: float | None,
    control: float | None,
    expected: float | None,
    said: str,
) -> None:
    assert srm_word(flagged, treatment, control, expected) == said


def test_the_guardrail_slowest_to_detect_its_regression_is_the_one_named() -> None:
    both = running(
        plan={"guardrails": [Guardrail(metric="error_rate"), Guardrail(metric="conversion_rate")]}
    )
    tests = {
        "error_rate": published_test(variance=4e-8, n=20_000),
        "conversion_rate": published_test(variance=1e-3, n=20_000, direction="higher_is_better"),
    }
    arms = {
        name: {"units": 400, **SPREAD, "conversions": 2_000} for name in ("treatment", "control")
    }
    verdict = Verdict(
        VerdictKind.HOLD,
        "held",
        None,
        GateEvidence.model_validate({"arms": arms, "guardrails": tests}),
    )
    needs = stage_needs(both, verdict, at(10))
    assert needs is not None
    assert needs.to_detect is not None
    assert (needs.to_detect.guardrail, needs.to_detect.effect) == ("conversion_rate", -0.5)
    assert needs.lines[-1].startswith("-50% on conversion rate: ")
