"""Write ``docs/openfeature-conformance.md`` from the suites and the list of differences.

``python -m tests.integration.conformance.page`` writes the page; ``--check``
exits 1 when the committed page is not what it would write. Each scenario row
of the vendored features is listed as the run treats it: passes (collected,
unlisted: it must pass), differs (a strict xfail with its reason) or not run
(left out of the collection), so the page claims no pass the suite does not run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from pytest_bdd.parser import FeatureParser

from tests.integration.conformance.differences import (
    DIFFERENCES,
    EXTENSIONS,
    SPEC_FIXES,
    Difference,
    SpecFix,
    difference_of,
)
from tests.integration.conformance.flagset import RULES, VECTORS

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "openfeature-conformance.md"
FEATURES = ("evaluation_v2.feature", "metadata.feature", "contextMerging.feature")
WHOSE = {
    "controller": "the controller, deliberately",
    "provider": "the Python OFREP provider",
    "sdk": "the Python SDK",
    "suite": "the suite (not applicable over OFREP)",
}

HEAD = """# OpenFeature and OFREP conformance

Written by `python -m tests.integration.conformance.page` from the suites'
run and their list of differences (`tests/integration/conformance/differences.py`);
a test fails when this page and that list part.

Two suites run in CI (`make test`) against the real daemon (`rollout-controller
run` on Apache Kafka and Redis), over sockets:

* **OpenFeature's Gherkin suites** (`evaluation_v2`, `metadata`, `contextMerging`
  from [open-feature/spec](https://github.com/open-feature/spec), vendored in
  `tests/vectors/openfeature/`), each scenario evaluated by OpenFeature's
  published Python SDK and OFREP provider (`openfeature-provider-ofrep`). A
  scenario that differs is run as a strict expected failure: if it ever passes,
  the run fails until this page says so.
* **schemathesis** against the OFREP 0.3.0 OpenAPI document
  (`tests/vectors/ofrep/openapi.yaml`): seeded, 150 requests per operation, no
  5xx, every answer matching its status, content type, headers and schema, and
  every request the document forbids refused.

## The suite's flags as ours

A flag here has two arms, control and treatment. One rule translates every flag
of the suite's `test-flags.json`: untargeted, treatment serves the default
variant and control the other, the rollout completed (`STATIC`); `disabled`, the
same arms, the rollout killed (`DISABLED`); targeted, treatment serves the variant
the expression picks and control the default one, the rollout's stage targeting
the expression written as our rule:

| CEL expression | Our rule |
| --- | --- |
"""


def scenario_rows(feature: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Each scenario of ``feature`` and each of its example rows (``{}``: none)."""
    parsed = FeatureParser(str(VECTORS), feature).parse()
    for template in parsed.scenarios.values():
        rows = [row for examples in template.examples for row in examples.as_contexts()]
        for row in rows or [{}]:
            yield template.name, row


def result(feature: str, scenario: str, row: dict[str, str]) -> str:
    found = difference_of(feature, scenario, row)
    if found is None:
        return "passes"
    label = "not run" if not found.run else "differs"
    return f"{label} ([{_number(found)}](#difference-{_number(found)}))"


def _number(found: Difference) -> int:
    reasons = list(dict.fromkeys(d.why for d in DIFFERENCES))
    return reasons.index(found.why) + 1


def _row_text(row: dict[str, str]) -> str:
    text = ", ".join(f"{k}: {v or '(empty)'}" for k, v in row.items())
    return text.replace("|", "\\|").replace('\\"', '"') or "—"


def feature_section(feature: str) -> list[str]:
    lines = [f"### `{feature}`", "", "| Scenario | Example | Result |", "| --- | --- | --- |"]
    rows = list(scenario_rows(feature))
    lines += [f"| {s} | {_row_text(r)} | {result(feature, s, r)} |" for s, r in rows]
    passed = sum(1 for s, r in rows if difference_of(feature, s, r) is None)
    return [*lines, "", f"{passed} of {len(rows)} pass.", ""]


def differences_section() -> list[str]:
    lines = ["## Why each difference", ""]
    seen: dict[str, Difference] = {}
    for found in DIFFERENCES:
        seen.setdefault(found.why, found)
    for number, found in enumerate(seen.values(), start=1):
        lines += [
            f'<a id="difference-{number}"></a>**{number}.** Whose: {WHOSE[found.whose]}. '
            f"{found.why}",
            "",
        ]
    return lines


def fixes_section(title: str, intro: str, fixes: list[SpecFix]) -> list[str]:
    lines = [f"## {title}", "", intro, ""]
    for fix in fixes:
        where = "/".join(str(step) for step in fix.where)
        lines += [f"* **{fix.name}** (`{where}`). {fix.bug} *Read as:* {fix.fix}", ""]
    return lines


def extensions_section() -> list[str]:
    lines = [
        "## Routes beyond the document",
        "",
        "The daemon serves these under `/ofrep/v1/` (and `/env/NAME/ofrep/v1/`) besides the "
        "two evaluation operations of OFREP's document; a test holds this list to the "
        "daemon's routes.",
        "",
    ]
    for extension in EXTENSIONS:
        lines += [f"* **`{extension.method} {extension.path}`**. {extension.what}", ""]
    return lines


def page() -> str:
    lines = [HEAD.rstrip("\n")]
    lines += [f"| `{cel}` | `{rule}` |" for cel, (rule, _variant) in RULES.items()]
    lines += ["", "## Scenarios", ""]
    for feature in FEATURES:
        lines += feature_section(feature)
    lines += differences_section()
    lines += fixes_section(
        "Bugs of the OFREP 0.3.0 document",
        "Found running schemathesis; each is corrected in the copy the test reads, never "
        "by changing an answer, and would be worth reporting upstream.",
        [fix for fix in SPEC_FIXES if fix.whose == "spec"],
    )
    lines += fixes_section(
        "Where the daemon reads requests more leniently than the document",
        "Deliberate; the copy schemathesis reads says so, so the run still checks the rest.",
        [fix for fix in SPEC_FIXES if fix.whose == "controller"],
    )
    lines += extensions_section()
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    written = page()
    if "--check" in argv:
        if PAGE.read_text(encoding="utf-8") != written:
            print(f"{PAGE} is stale: python -m tests.integration.conformance.page")
            return 1
        return 0
    PAGE.write_text(written, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
