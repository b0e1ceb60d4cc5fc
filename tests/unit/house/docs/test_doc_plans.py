"""Every plan a reader sees is a plan file that these tests validate.

README.md is rendered where nothing is included, so it shows plans as text:
each must be one file of ``examples/plans/`` or ``ops/plans/``, byte for
byte. The pages under ``docs/`` hold no plan text of their own: they include
the file (``--8<-- "examples/plans/rings.yaml"``, the site's snippets), so
what the site shows is what was validated.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.core.rollouts.plan import load_plan
from controller.core.rollouts.planlint import lint

ROOT = Path(__file__).resolve().parents[4]
EXAMPLES = sorted((ROOT / "examples" / "plans").glob("*.yaml"))
SHIPPED = sorted((ROOT / "ops" / "plans").glob("*.yaml"))
PAGES = sorted((ROOT / "docs").rglob("*.md"))
INCLUDE = re.compile(r'^--8<-- "([^"]+)"$', flags=re.MULTILINE)


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def is_plan(block: str) -> bool:
    return re.search(r"^stages:", block, flags=re.MULTILINE) is not None


def readme_plans() -> list[str]:
    return [b for b in yaml_blocks((ROOT / "README.md").read_text(encoding="utf-8")) if is_plan(b)]


def included() -> set[str]:
    """Every file a docs page includes, relative to the repository's root."""
    return {name for page in PAGES for name in INCLUDE.findall(page.read_text(encoding="utf-8"))}


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_there_are_example_plans_and_the_readme_shows_one() -> None:
    assert "quickstart.yaml" in {path.name for path in EXAMPLES}
    assert readme_plans()


@pytest.mark.parametrize("path", EXAMPLES, ids=relative)
def test_every_example_plan_validates_without_findings_and_can_complete(path: Path) -> None:
    example = load_plan(path.read_text(encoding="utf-8"), source=relative(path))
    assert lint(example) == []
    last = example.stages[-1]
    # completing needs the last stage to reach everyone without waiting for a control arm
    assert (last.percent, last.min_units_per_arm) == (100, 0)


@pytest.mark.parametrize("block", readme_plans())
def test_every_readme_plan_is_a_plan_file_byte_for_byte(block: str) -> None:
    files = {path.read_text(encoding="utf-8") for path in [*EXAMPLES, *SHIPPED]}
    assert block in files, f"this README plan is no file of examples/plans or ops/plans:\n{block}"


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_docs_pages_include_their_plans_rather_than_hold_them(page: Path) -> None:
    held = [block for block in yaml_blocks(page.read_text(encoding="utf-8")) if is_plan(block)]
    assert held == [], f'{relative(page)}: include the plan\'s file (--8<-- "examples/plans/...")'


def test_every_included_file_exists_and_every_example_plan_is_shown() -> None:
    names = included()
    assert "examples/plans/rings.yaml" in names
    for name in names:  # a file, or a section of one: "README.md:five-minutes"
        assert (ROOT / name.split(":", 1)[0]).is_file(), name
    in_readme = readme_plans()
    shown = names | {relative(p) for p in EXAMPLES if p.read_text(encoding="utf-8") in in_readme}
    assert {relative(path) for path in EXAMPLES} <= shown


def test_the_readme_is_a_front_door_of_at_most_300_lines() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    assert "## Your own flag in five minutes" in readme
    assert "(docs/images/" in readme
