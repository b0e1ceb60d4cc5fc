"""The console's holdout page: the report in the console's words, every value escaped."""

from __future__ import annotations

from dataclasses import replace

from controller.console.holdout import holdout_detail, holdout_link
from controller.core.holdouts import FlagCells, holdout_report
from controller.core.rollouts import DEFAULT_PLAN
from controller.core.wire import Holdout
from tests.support.holdout_sim import last_look

HOLDOUT = Holdout(name="q4", percent=5)


def test_the_page_shows_each_comparison_with_its_verdicts_and_links_each_flag() -> None:
    rest, held = last_look(1, percent=5, rest_factor=3.0)
    flags = [
        FlagCells("checkout", DEFAULT_PLAN, (3,), rest, held),
        FlagCells("<script>x</script>", DEFAULT_PLAN, (1,), *last_look(2, percent=5)),
    ]
    page = holdout_detail(holdout_report(HOLDOUT, flags))
    assert '<h1 data-holdout="q4">Holdout q4</h1>' in page
    assert 'data-scope="cumulative"' in page
    assert '<a href="/ui/rollouts/checkout">checkout</a> (flag versions 3)' in page
    assert 'data-guardrail="error_rate" data-verdict="regressed"' in page
    assert "<script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert "over all 3 comparisons" in page


def test_a_holdout_whose_events_never_arrive_says_what_is_missing() -> None:
    rest, held = last_look(3, percent=5)
    flags = [FlagCells("checkout", DEFAULT_PLAN, (3,), rest, replace(held, units=0))]
    page = holdout_detail(holdout_report(HOLDOUT, flags))
    expected = f"{0.05 * rest.units:,.0f}"
    assert f"<strong>Sample ratio mismatch</strong>: no held-out units against {expected}" in page
    assert 'data-scope="checkout" data-trusted="false"' in page


def test_a_rollout_naming_a_holdout_links_its_page() -> None:
    assert 'href="/ui/holdouts/q4"' in holdout_link("q4")
