"""A flag's report across environments: which rollouts it covers, in which order, and how.

``rolloutctl report FLAG`` covers each environment the flag has a rollout in:
in its pipeline's order when it has one (each step's rollout key, as
``GET /pipelines/{flag}`` serves it), else the default environment's rollout
(the flag's own key) first, then the others (``checkout@staging``) by name.
``--environment`` keeps one. A flag with only the default environment's
rollout and no pipeline keeps the one-rollout report, unchanged
(:func:`sections_of` answers None). Pure: what the controller served, read
into its models (the pipeline run a :class:`.PipelineRun`), in; sections and
their Markdown or HTML out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from controller.core.common import displayable, html_text, split
from controller.core.reading import PipelineRun, pipeline_text
from controller.ctl.report import render
from controller.ctl.report.model import Report

DEFAULT = "default"
"""What a section of the flag's own key is called when no pipeline names its environment."""


@dataclass(frozen=True, slots=True)
class Section:
    """One environment's part of the report: its rollout's key, and its report once built."""

    environment: str
    key: str
    report: Report | None = None
    note: str = ""
    """Why there is no report: the environment's rollout has not started."""


@dataclass(frozen=True, slots=True)
class ReleaseReport:
    """A flag's report across environments, with its pipeline's status where it has one."""

    flag: str
    generated_at: str
    sections: list[Section]
    pipeline: PipelineRun | None = None
    notes: list[str] = field(default_factory=list)


def sections_of(
    flag: str, pipeline: PipelineRun | None, keys: Iterable[str], only: str | None = None
) -> list[Section] | None:
    """The environments to report on, in order; None: the flag's own rollout alone, as ever.

    ``pipeline``: the flag's pipeline run (None: it has none); ``keys``: the rollout keys
    the controller lists; ``only``: ``--environment``.
    """
    steps = [] if pipeline is None else pipeline.environments
    found = [Section(s.environment, s.key or f"{flag}@{s.environment}") for s in steps]
    named = {s.key for s in found}
    mine = sorted({k for k in keys if split(k)[0] == flag and k not in named})
    found += [
        Section(split(k)[1] or DEFAULT, k)
        for k in sorted(mine, key=lambda k: (split(k)[1] is not None, k))
    ]
    if only is not None:
        kept = [s for s in found if s.environment == only]
        return kept or [Section(only, f"{flag}@{only}")]
    if pipeline is None and [s.key for s in found] in ([], [flag]):
        return None
    return found


def markdown(release: ReleaseReport) -> str:
    """Each environment's report, one section each, after the pipeline's status."""
    out = [f"# Release report: {render.md_text(release.flag)}", ""]
    envs = ", ".join(s.environment for s in release.sections)
    out += [f"Environments, in order: {render.md_text(envs)}.", ""]
    if release.pipeline is not None:
        lines = pipeline_text(release.pipeline).splitlines()
        out += ["## Pipeline", "", *(f"    {displayable(line)}" for line in lines), ""]
    out += [f"> {render.md_text(note)}" for note in release.notes]
    for section in release.sections:
        title = f"## Environment {section.environment} ({section.key})"
        out += ["", render.md_text(title), ""]
        if section.report is None:
            out += [render.md_text(section.note)]
        else:
            out += [render.markdown(section.report, depth=2)]
    return "\n".join(out).rstrip("\n") + "\n"


def html_page(release: ReleaseReport) -> str:
    """The report across environments as one self-contained HTML page."""
    h = html_text
    parts = [f"<h1>Release report: {h(release.flag)}</h1>"]
    envs = ", ".join(s.environment for s in release.sections)
    parts.append(f"<p>Environments, in order: {h(envs)}.</p>")
    if release.pipeline is not None:
        lines = pipeline_text(release.pipeline)
        parts += ["<h2>Pipeline</h2>", f'<pre class="pipeline">{h(lines)}</pre>']
    parts += [f'<p class="note">{h(note)}</p>' for note in release.notes]
    for section in release.sections:
        parts.append(
            f'<section class="environment" data-environment="{h(section.environment)}">'
            f"<h2>Environment {h(section.environment)} ({h(section.key)})</h2>"
        )
        if section.report is None:
            parts.append(f'<p class="note">{h(section.note)}</p>')
        else:
            parts.append(render.html_body(section.report, depth=2))
        parts.append("</section>")
    return render.page_around(f"Release report: {release.flag}", "\n".join(parts) + "\n")
