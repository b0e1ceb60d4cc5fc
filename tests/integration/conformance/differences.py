"""Where the conformance suites and the controller part, each with why: the one list.

:data:`DIFFERENCES` names the Gherkin scenarios (and rows of their examples)
that do not pass as written. Each is run and marked ``xfail(strict=True)``,
so a listed scenario that starts passing fails the run, unless ``run`` is
off: then it is left out of the collection (it drives something that has no
counterpart over OFREP). :data:`SPEC_FIXES` lists the bugs of OFREP 0.3.0's
OpenAPI document, corrected in the copy schemathesis reads, never by bending
an answer. ``docs/openfeature-conformance.md`` is written from both
(:mod:`.page`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from pytest_bdd.scenario import scenario_wrapper_template_registry

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
NO_KEY = (
    "A targeted flag places each unit within its rings by the unit's bucket, a hash of the "
    "`targetingKey`, so it answers `TARGETING_KEY_MISSING` to a context without one, and "
    "the scenario gives none."
)
NO_DEFAULT = (
    NO_KEY + " It also expects `DEFAULT`, which OFREP 0.3.0 does not list: outside its "
    "audience a unit is served control with `TARGETING_MATCH` and `cohort: outside`."
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
    Difference(EVALUATION, "Resolves zero value with targeting", NO_KEY, "controller"),
    Difference(
        EVALUATION, "Resolves zero value with targeting using default", NO_DEFAULT, "controller"
    ),
    Difference(EVALUATION, "Empty evaluation context", NO_DEFAULT, "controller"),
    Difference(EVALUATION, "Null context values", NO_DEFAULT, "controller"),
    Difference(EVALUATION, "Multiple context attributes targeting", NO_KEY, "controller"),
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
    where: tuple[str, ...]
    """The path of the corrected node in the document."""
    bug: str
    fix: str
    replacement: Any = field(default=None)


SPEC_FIXES: tuple[SpecFix, ...] = ()
