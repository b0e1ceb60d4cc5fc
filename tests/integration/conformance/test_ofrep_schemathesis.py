"""schemathesis against OFREP 0.3.0's OpenAPI document, pointed at the daemon.

Requests generated from the vendored document (``tests/vectors/ofrep/openapi.yaml``)
go over a socket to the daemon of :func:`conftest.conformance_daemon`; every
answer must be no 5xx and match its schema, its status, content type and
headers, and a request the document forbids must be refused. The document's
own bugs are corrected in the copy read here, each listed with why in
:data:`.differences.SPEC_FIXES`. The run is seeded and bounded, so CI draws
the same requests each time.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig

from tests.integration.conformance.differences import corrected_document

pytestmark = [pytest.mark.integration]

CONTEXT_ERRORS = {"TARGETING_KEY_MISSING", "INVALID_CONTEXT"}
"""The 400s a well-formed request may get: OFREP checks its context against the flag (a flag
that buckets units needs a ``targetingKey``). schemathesis's ``positive_data_acceptance``
takes any 400 to a schema-valid request for a failure, so this takes its place."""
EXAMPLES = 150
"""Requests drawn per operation and phase."""
SEED = 20260808

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
    }
)


schema = schemathesis.openapi.from_dict(corrected_document(), config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_matches_ofreps_document(
    case: schemathesis.Case[Any], conformance_daemon: str, http: requests.Session
) -> None:
    answer = case.call_and_validate(
        base_url=conformance_daemon,
        session=http,
        timeout=30,
        excluded_checks=[positive_data_acceptance],
    )
    if case.meta is not None and case.meta.generation.mode.is_positive:
        assert answer.status_code != 400 or answer.json()["errorCode"] in CONTEXT_ERRORS, (
            answer.status_code,
            answer.text,
        )


@pytest.fixture
def http() -> requests.Session:
    return requests.Session()
