"""schemathesis against our own OpenAPI document (``schemas/openapi.json``), on the daemon.

Requests generated from the document go over a socket to the daemon of
:func:`conftest.conformance_daemon` (with an operator token, as production runs); every
answer must be no 5xx and match its schema, status, content type and headers, and a request
the document forbids must be refused. The operator's routes get the token; the apps' routes
none, since that daemon requires no app keys. The run is seeded and bounded like the OFREP
one (:mod:`.test_ofrep_schemathesis`), so CI draws the same requests each time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig

from tests.integration.conformance.conftest import OPERATOR_TOKEN

pytestmark = [pytest.mark.integration]

DOCUMENT = Path(__file__).resolve().parents[3] / "schemas" / "openapi.json"
EXAMPLES = 60
"""Requests drawn per operation and phase."""
SEED = 20261125
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
    }
)

schema = schemathesis.openapi.from_dict(json.loads(DOCUMENT.read_text()), config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_matches_our_document(
    case: schemathesis.Case[Any], conformance_daemon: str, http: requests.Session
) -> None:
    case.call_and_validate(
        base_url=conformance_daemon,
        session=http,
        timeout=30,
        headers=_credentials(case),
        excluded_checks=[positive_data_acceptance],
    )


def _credentials(case: schemathesis.Case[Any]) -> dict[str, str]:
    """The operator token for the routes that take it; none for the apps' routes."""
    admitted = {name for need in case.operation.definition.raw.get("security", []) for name in need}
    if "operatorToken" in admitted:
        return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    return {}


@pytest.fixture
def http() -> requests.Session:
    return requests.Session()
