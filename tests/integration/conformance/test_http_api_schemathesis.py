"""schemathesis against our own OpenAPI document (``schemas/openapi.json``), on the daemon.

Requests generated from the document go over a socket to the daemon of
:func:`conftest.conformance_daemon` (with an operator token, as production runs); every
answer must be no 5xx and match its schema, status, content type and headers, a request
the document forbids must be refused, and one it allows accepted (a 2xx, 3xx, 401, 403, 404,
409 or 429), but for the few listed with why in :data:`POSITIVE_EXCEPTIONS`, each held to a
narrower check of its own. The operator's routes get the token; the apps' routes none, since
that daemon requires no app keys. The run is seeded and bounded like the OFREP one
(:mod:`.test_ofrep_schemathesis`), so CI draws the same requests each time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import Response

from tests.integration.conformance.conftest import OPERATOR_TOKEN, SEGMENT

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
INTEGER_FIELDS = ("v", "flag_version", "ts")
Check = Callable[[schemathesis.Case[Any], Response], bool]


def _batch_refused_as_documented(case: schemathesis.Case[Any], answer: Response) -> bool:
    """A 400 only for events that repeat an id or write an integer as ``3.0``."""
    if answer.status_code != 400:
        return True
    events: list[dict[str, Any]] = cast(dict[str, Any], case.body)["events"]
    refused: dict[str, Any] = answer.json()
    return all(
        error["reason"] == "repeated_id" or _integral_float(events[error["index"]])
        for error in refused["errors"]
    )


def _integral_float(event: dict[str, Any]) -> bool:
    return any(isinstance(event.get(name), float) for name in INTEGER_FIELDS)


def _payload_read(_case: schemathesis.Case[Any], answer: Response) -> bool:
    return answer.status_code != 400


UNREADABLE_PAYLOAD = (
    "A monitor's payload is its vendor's shape (Better Uptime's, or the generic one of "
    "docs/monitors.md), read leniently by the monitor's parser; the document leaves it an "
    "open object rather than restate a vendor's format, so a JSON object it cannot read is a "
    "422 naming the field."
)
POSITIVE_EXCEPTIONS: dict[str, tuple[str, Check]] = {
    "sendEvents": (
        "JSON Schema cannot say that the ids of a batch's events differ (uniqueItems compares "
        "whole events), so a schema-valid batch may repeat an id; and its `integer` admits "
        "`3.0`, which ingest refuses (schemas/README.md). Such events, and only they, make "
        "a schema-valid batch a 400.",
        _batch_refused_as_documented,
    ),
    "betterUptimeWebhook": (UNREADABLE_PAYLOAD, _payload_read),
    "monitorWebhook": (UNREADABLE_PAYLOAD, _payload_read),
}
"""Operations whose schema-valid requests may be refused: why, and the check they get."""

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
    excepted = POSITIVE_EXCEPTIONS.get(case.operation.definition.raw["operationId"])
    answer = case.call_and_validate(
        base_url=conformance_daemon,
        session=http,
        timeout=30,
        headers=_credentials(case),
        excluded_checks=[positive_data_acceptance] if excepted else [],
    )
    if excepted is not None and case.meta is not None and case.meta.generation.mode.is_positive:
        why, check = excepted
        assert check(case, answer), (why, answer.status_code, answer.text)


def _credentials(case: schemathesis.Case[Any]) -> dict[str, str]:
    """The operator token for the routes that take it; none for the apps' routes."""
    admitted = {name for need in case.operation.definition.raw.get("security", []) for name in need}
    if "operatorToken" in admitted:
        return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    return {}


@pytest.fixture
def http() -> requests.Session:
    return requests.Session()


ROLLOUT_READS = ("/rollouts/{flag}", "/rollouts/{flag}/verdict")


@pytest.mark.parametrize("path", ROLLOUT_READS)
def test_every_rollouts_answer_matches_our_document(
    path: str, conformance_daemon: str, http: requests.Session
) -> None:
    # Generated flags rarely name a rollout there is: each of the suite's is read here.
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    listed = http.get(f"{conformance_daemon}/rollouts", headers=headers, timeout=30)
    flags = [rollout["flag"] for rollout in listed.json()["rollouts"]]
    assert len(flags) >= 10, listed.text
    operation = schema[path]["GET"]
    for flag in flags:
        answer = http.get(conformance_daemon + path.format(flag=flag), headers=headers, timeout=30)
        assert answer.status_code == 200, (flag, answer.text)
        operation.validate_response(answer)


def test_a_segments_answer_matches_our_document(
    conformance_daemon: str, http: requests.Session
) -> None:
    listed = http.get(f"{conformance_daemon}/v1/segments", timeout=30)
    schema["/v1/segments"]["GET"].validate_response(listed)
    assert [s["name"] for s in listed.json()["segments"]] == [SEGMENT]
    answer = http.get(f"{conformance_daemon}/v1/segments/{SEGMENT}", timeout=30)
    assert answer.status_code == 200, answer.text
    schema["/v1/segments/{name}"]["GET"].validate_response(answer)
    again = http.get(
        f"{conformance_daemon}/v1/segments/{SEGMENT}",
        headers={"If-None-Match": answer.headers["ETag"]},
        timeout=30,
    )
    assert again.status_code == 304
    schema["/v1/segments/{name}"]["GET"].validate_response(again)
