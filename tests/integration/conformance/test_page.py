"""The conformance page is what its generator writes, and the differences name real scenarios."""

from __future__ import annotations

import pytest
import yaml
from aiohttp import web

from controller.adapters.ofrep.routes import OfrepRoutes
from controller.core.reading.views import FlagStates
from tests.integration.conformance.differences import DIFFERENCES, EXTENSIONS, SPEC, Difference
from tests.integration.conformance.page import FEATURES, PAGE, ROOT, page, scenario_rows


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


def _served_ofrep_routes() -> set[tuple[str, str]]:
    async def states() -> FlagStates:
        return FlagStates([])

    app = web.Application()
    OfrepRoutes(states, body_timeout_seconds=5).add_to(app.router)
    return {
        (route.method, info["path"])
        for route in app.router.routes()
        if route.method != "OPTIONS"
        and "path" in (info := route.get_info())
        and info["path"].startswith("/ofrep/")
    }


def test_each_ofrep_route_beyond_the_document_is_listed_as_ours() -> None:
    document = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    specified = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method != "parameters"
    }
    beyond = _served_ofrep_routes() - specified
    assert beyond == {(e.method, e.path) for e in EXTENSIONS}


def test_the_client_guide_marks_the_configuration_route_as_this_projects_extension() -> None:
    guide = (ROOT / "docs" / "clients.md").read_text(encoding="utf-8")
    paragraphs = [" ".join(p.split()) for p in guide.split("\n\n")]
    naming = [p for p in paragraphs if "/ofrep/v1/configuration" in p and "not limited" not in p]
    assert naming
    for paragraph in naming:
        assert "extension" in paragraph, paragraph
