"""A ring that completed says its limits as the ring its limits gated showed them, not as
the closing step of a second after it: on the console's page, in ``rolloutctl status`` and
in the sample-ratio block alike."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta

import pytest

from controller.console.figures import GuardrailSpec
from controller.console.rollout import RolloutPage, rollout_detail
from controller.console.sample_ratio import srm_section
from controller.core.machine.gate import evaluate
from controller.core.machine.machine import step
from controller.core.reading import LimitsGated, limits_comparison, limits_said
from controller.core.reading.views import RolloutStatus, describe
from controller.core.rollouts.plan import parse_plan
from controller.core.rollouts.rollout import GateInput, Phase, Rollout, VerdictKind
from controller.core.stats import NO_CONTROL
from controller.core.stats.aggregates import ArmAggregate
from controller.core.wire import GateEvidence, JsonObject, RolloutEvidence
from controller.ctl.looking.views import status_detail
from tests.support.documents import sequential_test
from tests.unit.console.test_limit_chart import served_history
from tests.unit.core.machine.gate import test_gate as table

RING_S = 30
"""The ring stage's minimum time; the closing step after it has none."""


def ring(closing_s: int = 0) -> Rollout:
    """Staff at 100% for ``RING_S`` seconds, then everyone at 100% for ``closing_s``: both
    gated on an error-rate limit of 5%, neither with a concurrent control."""
    plan = parse_plan(
        {
            "stages": [
                {
                    "audience": 'user_id in segment("staff")',
                    "percent": 100,
                    "min_duration": timedelta(seconds=RING_S),
                },
                {"percent": 100, "min_duration": timedelta(seconds=closing_s)},
            ],
            "guardrails": [{"metric": "error_rate"}],
            "limits": {"error_rate": 0.05},
        }
    )
    return table.rollout(plan)


def gate(state: Rollout, requests: int, errors: int, now: datetime) -> Rollout:
    """``state`` after its gate at ``now`` on the treated units' ``requests`` and ``errors``."""
    treated = table.arm(units=200, requests=requests, errors=errors)
    verdict = evaluate(state, table.data(treated, ArmAggregate()), now)
    assert verdict.kind is VerdictKind.ADVANCE, verdict.reason
    after, _ = step(state, GateInput(verdict=verdict, now=now))
    assert after is not None
    return after


def completed(closing_s: int = 0) -> Rollout:
    """The ring shown under its limit on 20,000 requests (1% failing), then the closing step
    passed on 18 requests, none failing: 0 [0, 78%]-like, not shown above nor under."""
    passed = table.T0 + timedelta(seconds=RING_S + 5)
    widened = gate(ring(closing_s), 20_000, 200, passed)
    assert (widened.phase, widened.stage) == (Phase.RUNNING, 1)
    done = gate(widened, 18, 0, passed + timedelta(seconds=closing_s + 1))
    assert done.phase is Phase.COMPLETED
    return done


def status_of(rollout: Rollout) -> RolloutStatus:
    later = table.T0 + timedelta(hours=2)
    return RolloutStatus.model_validate(describe(rollout, None, later).served())


TEST = sequential_test(delta=0.01, lower=0.0, upper=0.02, tolerance=0.05)
LIMITS = {"error_rate": {"limit": 0.05, "test": TEST}}
AT = {"index": 0, "of": 2, "percent": 100}
RING = {"comparison": NO_CONTROL, "limits": LIMITS}
CLOSING = GateEvidence.model_validate(RING)
COMPARED = GateEvidence.model_validate({"comparison": "concurrent control"})


@pytest.mark.parametrize(
    ("passed", "at"),
    [
        (RING | {"at_stage": AT | {"label": "stage 1/2 (100%)"}}, "stage 1/2 (100%)"),
        (RING | {"at_stage": AT}, "stage 1"),  # a label left out: by its number
        (RING, "an earlier stage"),  # a pass that did not say where
    ],
)
def test_a_kept_pass_is_served_with_its_stage_in_words(passed: JsonObject, at: str) -> None:
    served = LimitsGated.of(RolloutEvidence.model_validate(passed))
    assert served == LimitsGated(at=at, evidence=CLOSING)
    assert LimitsGated.model_validate(served.model_dump(mode="json")) == served


RINGED = {"error_rate": {"limit": 0.05, "test": TEST | {"delta": 0.02, "upper": 0.03}}}
RINGED_EVIDENCE = GateEvidence.model_validate(RING | {"limits": RINGED})
GATED = LimitsGated(at="stage 1/2 (100%)", evidence=RINGED_EVIDENCE)
UNCOMPARED = GateEvidence.model_validate(RING | {"comparison": "control"})


@pytest.mark.parametrize(
    ("evidence", "gated", "said", "at"),
    [
        (CLOSING, None, CLOSING, ""),  # running, or no pass kept: the gate's own
        (CLOSING, GATED, GATED.evidence, "stage 1/2 (100%)"),  # the ring's pass
        (COMPARED, GATED, GATED.evidence, "stage 1/2 (100%)"),  # completed after a watch
        (CLOSING, GATED.model_copy(update={"evidence": COMPARED}), CLOSING, ""),  # no limit
        (CLOSING, GATED.model_copy(update={"evidence": UNCOMPARED}), CLOSING, ""),
    ],
)
def test_which_evidence_the_limits_are_said_from(
    evidence: GateEvidence, gated: LimitsGated | None, said: GateEvidence, at: str
) -> None:
    assert limits_said(evidence, gated) == (said, at)


def test_a_completed_ring_keeps_the_pass_of_its_ring_not_of_its_closing_step() -> None:
    done = completed()
    kept = done.limits_gated
    assert kept is not None
    assert (kept.action, kept.kind) == ("advance", "gate")
    assert kept.evidence.at_stage is not None
    assert kept.evidence.at_stage.index == 0
    assert kept.evidence.limits is not None
    assert kept.evidence.limits["error_rate"].test.upper < 0.05  # shown under in the ring
    assert done.ended is not None
    assert done.ended.evidence.limits is not None  # the closing step's 18 requests
    assert done.ended.evidence.limits["error_rate"].test.upper > 0.05


def test_a_closing_step_with_time_of_its_own_is_the_stage_its_limits_are_said_from() -> None:
    done = completed(closing_s=10)
    assert done.limits_gated is not None
    assert done.limits_gated.action == "complete"
    assert done.limits_gated.evidence.at_stage is not None
    assert done.limits_gated.evidence.at_stage.index == 1


def test_a_running_ring_serves_no_kept_pass() -> None:
    passed = table.T0 + timedelta(seconds=RING_S + 5)
    widened = gate(ring(), 20_000, 200, passed)
    assert widened.limits_gated is not None  # kept, but said only once it completed
    assert status_of(widened).limits_gated is None


def test_the_page_status_and_sample_ratio_say_the_ring_its_limits_gated() -> None:
    status = status_of(completed())
    said = limits_comparison(status.evidence, status.limits_gated)
    assert said.startswith(f"{NO_CONTROL}: gated on absolute limits at stage 1/2 (100%): ")
    assert "error_rate: 1.0% [" in said
    assert "shown under it" in said
    assert "18 requests" not in said
    # rolloutctl status
    assert f"  comparison: {said}" in status_detail(status).splitlines()
    # the sample-ratio block
    block = html.unescape(srm_section(status, served_history()))
    assert f"Comparison</b>: {said}</p>" in block
    # the page's Limits summary, the limit's own line
    specs = [GuardrailSpec("error_rate")]
    page = rollout_detail(RolloutPage(status, served_history(), (), (), specs))
    line = re.search(r'<p class="limit-state">(.*?)</p>', page)
    assert line is not None
    assert html.unescape(line[1]) == "at stage 1/2 (100%): " + said.split(": ", 2)[2]
