"""The conformance page is what its generator writes, and the differences name real scenarios."""

from __future__ import annotations

import pytest

from tests.integration.conformance.differences import DIFFERENCES, Difference
from tests.integration.conformance.page import FEATURES, PAGE, page, scenario_rows


def test_the_conformance_page_is_what_the_generator_writes() -> None:
    assert PAGE.read_text(encoding="utf-8") == page(), (
        "docs/openfeature-conformance.md is stale: python -m tests.integration.conformance.page"
    )


@pytest.mark.parametrize("difference", DIFFERENCES, ids=lambda d: f"{d.feature}:{d.scenario}")
def test_each_listed_difference_covers_a_row_of_the_suites(difference: Difference) -> None:
    rows = [
        (feature, scenario, row) for feature in FEATURES for scenario, row in scenario_rows(feature)
    ]
    assert any(difference.covers(*each) for each in rows), difference
