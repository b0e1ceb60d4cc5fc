"""The HTTP API's OpenAPI document: valid OpenAPI 3.1, and every route of the adapters in it.

The file itself is held to the models by ``test_contracts.py`` (drift); schemathesis holds
the live daemon to it (``tests/integration/conformance/test_http_api_schemathesis.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

import controller
from controller.contracts import render_files
from controller.contracts.openapi import OPENAPI_FILE, openapi_document

DOCUMENT = Path(__file__).resolve().parents[3] / "schemas" / OPENAPI_FILE
ADAPTERS = Path(controller.__file__).parent / "adapters"
MOUNTED = re.compile(r"""add_(get|post)\(\s*["']([^"']+)["']""")
DESCRIBED_ELSEWHERE = ("/ui",)
"""Paths for people (the console), not for clients. OFREP and OTLP mount theirs under a
prefix, which :data:`MOUNTED` does not see: the document refers to their own specs."""


def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


def test_the_checked_in_document_is_valid_openapi_3_1() -> None:
    validate(_document(), cls=OpenAPIV31SpecValidator)
    assert _document()["openapi"].startswith("3.1.")


def test_a_broken_document_is_refused_by_the_validator() -> None:
    # The validator must be able to fail: a reference to no component is an error.
    broken = openapi_document()
    broken["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"] = {
        "schema": {"$ref": "#/components/schemas/Nothing"}
    }
    with pytest.raises(Exception, match="Nothing"):
        validate(broken, cls=OpenAPIV31SpecValidator)


def test_export_writes_the_document() -> None:
    assert OPENAPI_FILE in render_files()


def _mounted() -> set[tuple[str, str]]:
    found = set()
    for path in ADAPTERS.rglob("*.py"):
        found |= {(m, p) for m, p in MOUNTED.findall(path.read_text(encoding="utf-8"))}
    return found


def test_every_route_the_adapters_mount_is_described() -> None:
    paths = _document()["paths"]
    mounted = {(m, p) for m, p in _mounted() if not p.startswith(DESCRIBED_ELSEWHERE)}
    assert len(mounted) >= 15, "the scan finds the routes"
    missing = sorted(f"{m.upper()} {p}" for m, p in mounted if m not in paths.get(p, {}))
    assert not missing


def test_ofrep_and_otlp_point_at_their_own_specifications() -> None:
    tags = {tag["name"]: tag for tag in _document()["tags"]}
    assert tags["ofrep"]["externalDocs"]["url"].startswith("https://")
    assert tags["otlp"]["externalDocs"]["url"].startswith("https://")
    assert not [p for p in _document()["paths"] if p.startswith(("/ofrep", "/v1/traces"))]


def test_the_read_apis_answers_are_its_published_models() -> None:
    # The rollouts' answers refer to components generated from the same models as
    # http-*.schema.json, so a change to them (the evidence's, say) reaches this document.
    paths = _document()["paths"]
    answer = paths["/rollouts/{flag}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert answer["schema"] == {"$ref": "#/components/schemas/RolloutStatus"}
    files = render_files()
    published = json.loads(files["http-rollout.schema.json"])
    component = _document()["components"]["schemas"]["RolloutStatus"]
    assert set(component["properties"]) == set(published["properties"])


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/v1/events", "post", {"202", "400", "401", "403", "408", "409", "413", "415", "429"}),
        ("/rollouts/{flag}/verdict", "get", {"200", "401", "403", "404", "429", "503"}),
        ("/v1/segments/{name}", "get", {"200", "304", "400", "401", "403", "404", "503"}),
        ("/readyz", "get", {"200", "503"}),
    ],
)
def test_refusals_are_described(path: str, method: str, statuses: set[str]) -> None:
    answers = _document()["paths"][path][method]["responses"]
    assert statuses <= set(answers)
