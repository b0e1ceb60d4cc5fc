"""Where the conformance suites and the controller part, each with why: the one list.

:data:`DIFFERENCES` names the Gherkin scenarios (and rows of their examples)
that do not pass as written. Each is run and marked ``xfail(strict=True)``,
so a listed scenario that starts passing fails the run, unless ``run`` is
off: then it is left out of the collection (it drives something that has no
counterpart over OFREP). :data:`SPEC_FIXES` lists the bugs of OFREP 0.3.0's
OpenAPI document, corrected in the copy schemathesis reads, never by bending
an answer; :data:`EXTENSIONS` the routes the daemon serves beyond the
document. ``docs/openfeature-conformance.md`` is written from them (:mod:`.page`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pytest_bdd.scenario import scenario_wrapper_template_registry

SPEC = Path(__file__).resolve().parents[2] / "vectors" / "ofrep" / "openapi.yaml"
Whose = Literal["controller", "provider", "sdk", "suite"]
EVALUATION, METADATA = "evaluation_v2.feature", "metadata.feature"


@dataclass(frozen=True)
class Difference:
    """A scenario (or some rows of its examples) that does not pass as written, and why."""

    feature: str
    scenario: str
    why: str
    whose: Whose
    rows: tuple[Mapping[str, str], ...] = ()
    """The example rows it covers, each by some of its values; none: every row."""
    run: bool = True

    def covers(self, feature: str, scenario: str, row: Mapping[str, str]) -> bool:
        if (feature, scenario) != (self.feature, self.scenario):
            return False
        return not self.rows or any(_within(wanted, row) for wanted in self.rows)


def _within(wanted: Mapping[str, str], row: Mapping[str, str]) -> bool:
    return all(row.get(name) == value for name, value in wanted.items())


VARIANTS = (
    "A variant is the arm a unit is served, `control` or `treatment`: apps report it with "
    "their exposures and the controller compares the arms. The suite's variant names "
    "(`on`, `greeting`, `ten`...) have no place in a two-arm rollout; the values match."
)
NO_DEFAULT = (
    "It expects `DEFAULT`, which OFREP 0.3.0 does not list: outside its audience a unit is "
    "served control with `TARGETING_MATCH` and `cohort: outside`."
)
METADATA_KEYS = (
    "A flag's metadata is what apps report exposures with (`flag_version`, `rollout_id`, "
    "`stage`, `version`); flags carry no free-form metadata"
)

NO_STATE = (
    "It drives the SDK with a provider held NOT_READY, ERROR, FATAL or STALE; an OFREP "
    "provider over a live server has no such state to put it in (the Python OFREP provider "
    "has no initialisation that can fail), so nothing of ours would be run."
)

DIFFERENCES: tuple[Difference, ...] = (
    Difference(EVALUATION, "Complete evaluation details structure", VARIANTS, "controller"),
    Difference(EVALUATION, "Variant field population", VARIANTS, "controller"),
    Difference(
        EVALUATION, "Resolves zero value with targeting using default", NO_DEFAULT, "controller"
    ),
    Difference(EVALUATION, "Empty evaluation context", NO_DEFAULT, "controller"),
    Difference(EVALUATION, "Null context values", NO_DEFAULT, "controller"),
    Difference(
        EVALUATION, "Flag metadata in evaluation details", METADATA_KEYS + ".", "controller"
    ),
    Difference(METADATA, "Returns metadata", METADATA_KEYS + ".", "controller"),
    Difference(
        METADATA,
        "Returns no metadata",
        METADATA_KEYS + ", so an answer's metadata is never empty.",
        "controller",
    ),
    Difference(
        EVALUATION,
        "DISABLED reason",
        "A killed flag serves its control arm's value (here `{}`, the suite's non-default "
        "variant), which apps report as control, not the caller's fallback. The other rows "
        "pass because their fallbacks equal the non-default variants.",
        "controller",
        rows=({"type": "Object"},),
    ),
    Difference(
        EVALUATION,
        "Type mismatch error",
        "The Python OFREP provider's type check takes the boolean `true` for an integer (in "
        "Python `bool` is a subclass of `int`), so it reports no `TYPE_MISMATCH`; the server "
        "answers the boolean.",
        "provider",
        rows=({"type": "Integer"},),
    ),
    Difference(
        EVALUATION,
        "CACHED reason",
        "The Python OFREP provider asks the server at each evaluation and caches nothing, so "
        "the second evaluation reports the server's `STATIC`; a server never answers `CACHED`.",
        "provider",
    ),
    Difference(
        EVALUATION,
        "Evaluation context immutability",
        "The Python SDK's `FlagEvaluationDetails` is a plain (mutable) dataclass; the context "
        "the app passed is left unmodified.",
        "sdk",
    ),
    *(
        Difference(EVALUATION, scenario, NO_STATE, "suite", rows=rows, run=False)
        for scenario, rows in (
            ("Provider not ready error", ()),
            ("Provider in fatal state error", ()),
            (
                "Provider status accessibility",
                tuple({"status": s} for s in ("not ready", "error", "fatal", "stale")),
            ),
        )
    ),
)


def difference_of(feature: str, scenario: str, row: Mapping[str, str]) -> Difference | None:
    """The listed difference of one example row of a scenario (``{}``: one without examples)."""
    return next((d for d in DIFFERENCES if d.covers(feature, scenario, row)), None)


def marks_of(item: pytest.Item) -> Difference | None:
    """The listed difference of a collected Gherkin scenario, None for any other test."""
    template = _template_of(item)
    if template is None:
        return None
    callspec = getattr(item, "callspec", None)
    row: Mapping[str, str] = callspec.params.get("_pytest_bdd_example", {}) if callspec else {}
    return difference_of(Path(template.feature.filename).name, template.name, row)


def _template_of(item: pytest.Item) -> Any:
    function = getattr(item, "function", None)
    return scenario_wrapper_template_registry.get(function) if function else None


@dataclass(frozen=True)
class SpecFix:
    """A bug of OFREP 0.3.0's OpenAPI document, and its correction in the copy tests read."""

    name: str
    where: tuple[str | int, ...]
    """The path of the corrected node in the document."""
    bug: str
    fix: str
    correct: Callable[[Any], Any]
    """The node, corrected."""
    whose: Literal["spec", "controller"] = "spec"
    """``controller``: not a bug of the document but where the daemon deliberately differs."""

    def apply(self, document: dict[str, Any]) -> None:
        *parents, last = self.where
        node: Any = document
        for step in parents:
            node = node[step]
        node[last] = self.correct(node[last])


RETRY_AFTER = (
    r"^([0-9]+|(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT)$"
)
"""delay-seconds or an IMF-fixdate, the two forms of RFC 9110's ``Retry-After``."""


def _any_of(node: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": node["oneOf"]}


SPEC_FIXES: tuple[SpecFix, ...] = (
    SpecFix(
        "A success can never validate",
        ("components", "schemas", "evaluationSuccess", "allOf", 1),
        "`evaluationSuccess` says its value is `oneOf` boolean, string, integer, float, "
        "object or `codeDefaultFlag`. `codeDefaultFlag` has no properties, so every answer "
        "matches it as well as its own type (and an integer matches `integerFlag` and "
        "`floatFlag`): `oneOf` never holds, and no success answer, the document's own "
        "examples included, is valid.",
        "`anyOf` the same schemas, which is what the document means.",
        _any_of,
    ),
    SpecFix(
        "Optional authentication is declared required",
        ("security",),
        "The document requires `X-API-Key` or a bearer token on every operation, while both "
        'schemes say they are optional ("if supported by the flag management system"); a '
        "server that serves flags without keys cannot conform.",
        "An empty requirement (`{}`) beside the two, OpenAPI's way to say authentication "
        "is optional. (The daemon requires app keys by default; the conformance daemon "
        "serves without, and `tests/scenarios/operators/test_app_keys.py` proves the keys.)",
        lambda schemes: [*schemes, {}],
    ),
    *(
        SpecFix(
            f"Retry-After refuses what HTTP allows ({path})",
            ("paths", path, "post", "responses", "429", "headers", "Retry-After", "schema"),
            "HTTP's `Retry-After` is delay-seconds or an HTTP-date (RFC 9110, 10.2.3). The "
            "single-flag operation allows only `format: date-time`, refusing plain seconds "
            "(which its own description allows and the daemon sends); both operations take "
            "the date as RFC 3339 (`2024-02-07T12:00:00Z`, their example), which is no "
            "HTTP-date: the Python provider reads the date with `parsedate_to_datetime` and "
            "fails on it.",
            "A string of delay-seconds or an IMF-fixdate.",
            lambda _schema: {"type": "string", "pattern": RETRY_AFTER},
        )
        for path in ("/ofrep/v1/evaluate/flags/{key}", "/ofrep/v1/evaluate/flags")
    ),
    SpecFix(
        "The targeting key is declared required",
        ("components", "schemas", "context", "required"),
        "`context` requires `targetingKey`, while OpenFeature's providers leave it out where "
        "the app's context has none (the Python provider sends only the attributes), the "
        "document's own 400 answers include `TARGETING_KEY_MISSING`, which a required key "
        "would make a malformed request, and a flag that buckets nobody needs no key.",
        "`targetingKey` optional; the daemon answers `TARGETING_KEY_MISSING` where a flag "
        "needs one.",
        lambda required: [name for name in required if name != "targetingKey"],
    ),
    *(
        SpecFix(
            f"The context is declared required ({request})",
            ("components", "schemas", request, "required"),
            f"`{request}` requires `context`, while the Python OFREP provider posts `{{}}` "
            "when the app evaluates with no context at all.",
            "`context` optional: a request without one evaluates an empty context.",
            lambda required: [name for name in required if name != "context"],
        )
        for request in ("evaluationRequest", "bulkEvaluationRequest")
    ),
    SpecFix(
        "A null targeting key reads as none",
        ("components", "schemas", "context", "properties", "targetingKey"),
        "The document types `targetingKey` as a string. The daemon reads `null` as no key, "
        "as serializers that write unset fields as `null` mean it: a flag that buckets "
        "units answers `TARGETING_KEY_MISSING`, one that buckets nobody its value. Any other "
        "type is refused with `INVALID_CONTEXT`.",
        "A string or `null`.",
        lambda key: {**key, "type": ["string", "null"]},
        whose="controller",
    ),
    *(
        SpecFix(
            f"A null context reads as none ({request})",
            ("components", "schemas", request, "properties", "context"),
            "The document types `context` as an object. The daemon reads `null` as no "
            "context, like a body without one; any other type is refused with "
            "`INVALID_CONTEXT`.",
            "The context object or `null`.",
            lambda context: {"anyOf": [context, {"type": "null"}]},
            whose="controller",
        )
        for request in ("evaluationRequest", "bulkEvaluationRequest")
    ),
    SpecFix(
        "A malformed flagConfigLastModified is not refused",
        ("components", "parameters", "flagConfigLastModified", "schema"),
        "The document says the hint is a Unix time or an ISO 8601 date-time. The daemon "
        "announces etags, never a last-modified time, and reads only `flagConfigEtag`: a "
        "hint it does not use is ignored, whatever its form, rather than failing the whole "
        "bulk evaluation a provider asked for.",
        "Any value is accepted for it.",
        lambda _schema: {},
        whose="controller",
    ),
)


@dataclass(frozen=True)
class Extension:
    """A route the daemon serves under ``/ofrep/v1/`` that OFREP's document does not list."""

    method: str
    path: str
    what: str


EXTENSIONS: tuple[Extension, ...] = (
    Extension(
        "GET",
        "/ofrep/v1/configuration",
        "**This project's extension, not OFREP.** The endpoint was removed from OFREP "
        "before 1.0: no OpenFeature provider asks for it. The "
        "daemon keeps it, in its earlier shape (value types, the polling interval) with "
        "`eventStreams` beside, for clients written against the drafts; a conforming "
        "client never needs it.",
    ),
    Extension(
        "GET",
        "/ofrep/v1/events",
        "The event stream OFREP's `eventStreams` announces: the document lets a server "
        "name any URI there, and every bulk answer names this one.",
    ),
)


def corrected_document() -> dict[str, Any]:
    """OFREP's OpenAPI document with :data:`SPEC_FIXES` applied."""
    document: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    for fix in SPEC_FIXES:
        fix.apply(document)
    return document
