"""A unit that decides: the hold rule, how it is named, and the plan's settings."""

from __future__ import annotations

import hashlib

import pytest

from controller.core.common import ConfigError
from controller.core.rollouts import Guardrail, HeavyUnits
from controller.core.rollouts.plan import DEFAULT_PLAN, Plan, parse_plan
from controller.core.stats import DECIDING_SHARE, UnitCount, in_bucket, shown, weighed
from controller.core.stats.dominance import dominance_text
from controller.core.stats.heaviest.deciding import UnitShare, deciding, share_text
from controller.core.stats.units import unit_bucket
from tests.unit.core.stats.heaviest.test_caps import arm, flag

ALL = [
    *DEFAULT_PLAN.guardrails,
    Guardrail(metric="conversion_rate", tolerance=0.0),
    Guardrail(metric="latency_exceedance", edge_ms=250, tolerance=0.0),
    Guardrail(metric="new_failures"),
]


def plan(**heavy: object) -> Plan:
    return DEFAULT_PLAN.model_copy(
        update={"guardrails": ALL, "heavy_units": HeavyUnits.model_validate(heavy)}
    )


@pytest.mark.parametrize(
    ("share", "held"),
    [(0.4, False), (DECIDING_SHARE, False), (0.51, True), (0.9, True)],
)
def test_a_unit_over_the_share_after_caps_holds_the_guardrails_on_requests(
    share: float, held: bool
) -> None:
    rest = 10_000
    n = round(share / (1 - share) * rest) if share < 1 else rest
    bot = UnitCount("bot-7", n, n // 5)
    treatment = arm(501, rest + n, 100 + n // 5, (bot,))
    heavy = weighed(plan(cap="off"), flag(treatment, arm(500, rest, 100)))
    keys = {"error_rate", "latency_p99", "latency_exceedance", "new_failures"}
    assert set(heavy.held) == (keys if held else set())
    if held:
        assert "unit bot-7 sends" in heavy.held["error_rate"]
        assert "of treatment's requests" in heavy.held["error_rate"]


def test_the_default_cap_takes_a_unit_that_would_decide_down() -> None:
    bot = UnitCount("bot-7", 30_000, 6_000)
    treatment = arm(501, 40_000, 6_100, (bot,))
    data = flag(treatment, arm(500, 10_000, 100))
    assert weighed(plan(cap="off"), data).held  # uncapped, it sends 75%
    heavy = weighed(DEFAULT_PLAN, data)
    assert "error_rate" not in heavy.held  # it counts the capped requests
    assert heavy.held["latency_p99"].startswith(  # a latency, every request's latency
        "latency_p99 not yet tested: unit bot-7 sends 75% of treatment's requests and 98% of"
        " its errors: one unit decides it"
    )
    assert heavy.capping.cap == 100 * 20  # 20 requests a unit besides it
    assert heavy.data.treatment.requests == 10_000 + 2_000
    assert weighed(plan(cap=5_000), data).capping.cap == 5_000


def test_arms_listing_no_unit_are_taken_as_they_are() -> None:
    data = flag(arm(500, 10_000, 100), arm(500, 10_000, 100))
    heavy = weighed(DEFAULT_PLAN, data)
    assert (heavy.data, heavy.capping.cap, heavy.held) == (data, None, {})


@pytest.mark.parametrize(
    ("found", "text"),
    [
        (
            UnitShare("treatment", "bot-7", 0.41, 0.88),
            "unit bot-7 sends 41% of treatment's requests and 88% of its errors",
        ),
        (
            UnitShare("control", "crawler", 0.6, 0.0),
            "unit crawler sends 60% of control's requests and 0% of its errors",
        ),
    ],
)
def test_the_unit_is_named_with_its_shares(found: UnitShare, text: str) -> None:
    assert share_text(found) == text


def test_a_hashed_name_is_the_first_12_hex_of_its_sha256() -> None:
    digest = hashlib.sha256(b"bot-7").hexdigest()[:12]
    assert shown("bot-7", hashed=True) == digest
    assert shown("bot-7", hashed=False) == "bot-7"
    found = UnitShare("treatment", "bot-7", 0.7, 0.9)
    assert share_text(found, hashed=True).startswith(f"unit {digest} sends 70%")
    bot = UnitCount("bot-7", 30_000, 100)
    heavy = weighed(
        plan(cap="off", unit_names="hashed"), flag(arm(1, 40_000, 100, (bot,)), arm(1, 10, 0))
    )
    assert digest in heavy.held["error_rate"]
    assert "bot-7" not in heavy.held["error_rate"]


def test_the_bucket_names_the_listed_unit_in_it() -> None:
    bot = UnitCount("bot-7", 9_000, 900)
    data = flag(arm(501, 18_000, 1_000, (bot,)), arm(500, 9_000, 100))
    found = in_bucket(data, "treatment", unit_bucket("bot-7"))
    assert found == UnitShare("treatment", "bot-7", 0.5, 0.9)
    assert in_bucket(data, "treatment", (unit_bucket("bot-7") + 1) % 64) is None
    assert in_bucket(data, "control", unit_bucket("bot-7")) is None
    assert deciding(data) is None  # half, not more


class _Named:
    arm = "treatment"
    events_share = 0.41
    variance_share = 0.93
    unit = "bot-7"
    requests_share = 0.41
    errors_share = 0.88


def test_the_dominance_text_names_the_unit_where_the_evidence_does() -> None:
    assert dominance_text(_Named()).endswith(
        "carries 93% of its variance: unit bot-7 sends 41% of treatment's requests and 88%"
        " of its errors, and decides this metric"
    )


@pytest.mark.parametrize("cap", [0, -5, 1.5, "none", True, 2_000_000_000])
def test_a_cap_that_is_no_count_is_refused_in_words(cap: object) -> None:
    with pytest.raises(ConfigError, match=r"heavy_units\.cap: .*a whole number from 1"):
        parse_plan({**DEFAULT_PLAN.model_dump(mode="json"), "heavy_units": {"cap": cap}})


@pytest.mark.parametrize("cap", [1, 5_000, "off", "default"])
def test_a_cap_is_a_count_off_or_the_default(cap: object) -> None:
    parsed = parse_plan({**DEFAULT_PLAN.model_dump(mode="json"), "heavy_units": {"cap": cap}})
    assert parsed.heavy_units is not None
    assert parsed.heavy_units.cap == cap
