"""Reading a JSON document the process built (a gate's evidence, an alert's details)."""

from __future__ import annotations

from typing import Any

from controller.core.wire import GateEvidence, JsonObject, JsonValue


def as_read(document: JsonValue | GateEvidence) -> Any:
    """``document`` as a reader of the published message holds it: untyped JSON, as
    ``orjson.loads`` answers it, for a test to index into and compare (typed evidence
    as it is published)."""
    return document.wire() if isinstance(document, GateEvidence) else document


def sequential_test(**given: JsonValue) -> JsonObject:
    """A guardrail test as a gate publishes it, every field present; ``given`` overrides."""
    test: JsonObject = {
        "delta": 0.0,
        "variance": 1e-6,
        "n": 1000,
        "half_width": 0.01,
        "lower": -0.01,
        "upper": 0.01,
        "regressed": False,
        "direction": "lower_is_better",
        "tolerance": 0.0,
        "alpha": 0.05,
        "n_tune": 1000,
        "p_value": 1.0,
    }
    return test | given
