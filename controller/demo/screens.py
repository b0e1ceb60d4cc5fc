"""The demo's screens: pure functions from snapshots to rich renderables or plain lines.

Nothing here reads or writes anything: the live view, the summary table and
the plain log lines are computed from :mod:`controller.demo.snapshot` data,
so they can be rendered into a recording console and checked.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from controller.core.reading import (
    INCOHERENT,
    Evidence,
    advice_text,
    advisor_name,
    decided_at,
    guardrail_state,
    harm_edge,
    percent_text,
    quantity_text,
    stage_label,
)
from controller.demo.snapshot import ArmView, BoundView, DemoSnapshot, FlagView

PHASE_STYLES = {
    "pending": "dim",
    "running": "bold cyan",
    "paused": "bold yellow",
    "completed": "bold green",
    "rolled_back": "bold red",
    "aborted": "bold magenta",
    "killed": "bold red",
}
RATIONALE_CHARS = 160
REASON_MIN_WIDTH = 24
NO_VALUE = "-"


# -- numbers ---------------------------------------------------------------------------


def percent(value: float) -> str:
    """A stage percent: ``25%``, ``0.5%``."""
    return percent_text(value)


def rate(value: float | None) -> str:
    """An error rate: ``2.15%``, or ``-`` without requests."""
    return NO_VALUE if value is None else f"{value * 100:.2f}%"


def bound_text(bound: BoundView | None) -> str:
    """The error-rate test in one line: its state, Δ and its interval as every text writes
    them."""
    if bound is None:
        return f"error rate {guardrail_state(None).text}"
    limit = harm_edge(bound.tolerance, bound.direction)
    shown = quantity_text("error_rate", bound.delta, bound.lower, bound.upper, limit=limit)
    # The state's name alone, as every surface names it: the screen is narrow.
    return f"{guardrail_state(bound).state}: {shown}, p = {bound.p_value:.2g}"


def error_test_text(view: FlagView) -> str:
    """The error-rate test the gate decides on: against control, or against the limit."""
    return view.limits or bound_text(view.bound)


def advice_counts(view: FlagView) -> str:
    """``advance=3 hold=1``, or ``-`` when the advisor was never asked."""
    return " ".join(f"{action}={n}" for action, n in view.advice_counts) or NO_VALUE


# -- the live view ---------------------------------------------------------------------


def render_live(snapshot: DemoSnapshot) -> RenderableType:
    """The whole live screen: a header, then one panel per flag."""
    return Group(_header(snapshot), *(flag_panel(view) for view in snapshot.flags))


def _header(snapshot: DemoSnapshot) -> Text:
    text = Text()
    text.append("rollout-controller demo", style="bold")
    text.append(f"  {snapshot.elapsed_s:.1f} s  ")
    text.append(f"{snapshot.events_per_s:,.0f} events/s ({snapshot.events_sent:,} sent)\n")
    text.append(f"advisor: {snapshot.advisor}\n", style="dim")
    text.append(f"fault: {snapshot.fault}\n", style="dim")
    text.append(f"decision log: {snapshot.log_path}", style="dim")
    return text


def flag_panel(view: FlagView) -> Panel:
    """One flag: phase and stage, per-arm counts and error rates, the bound, the advisor."""
    parts: list[RenderableType] = [_title(view)]
    if view.rings:
        parts.append(_ladder(view))
    parts += [_arms(view), Text(error_test_text(view))]
    if view.note:
        parts.append(Text(view.note, style="dim"))
    if view.advisor is not None:
        parts.append(_advisor(view))
    style = PHASE_STYLES.get(view.phase, "").replace("bold ", "") or "white"
    return Panel(Group(*parts), border_style=style, box=box.ROUNDED, padding=(0, 1))


def _title(view: FlagView) -> Text:
    text = Text()
    text.append(view.flag, style="bold")
    text.append("  (faulty treatment)" if view.faulty else "  (healthy)", style="dim")
    text.append("\n")
    text.append(view.phase, style=PHASE_STYLES.get(view.phase, ""))
    if view.stages:
        text.append(f"  {stage_label(view.stage, view.stages, view.stage_percent)}")
    if view.ring:
        text.append(f"  ring {view.ring}", style="bold")
    else:
        text.append(f"  serving {percent(view.percent)}")
    if view.seconds_in_stage is not None:
        text.append(f"  {view.seconds_in_stage:.1f} s in stage")
    return text


def _ladder(view: FlagView) -> Text:
    """The rings in order: those passed, the current one, those to come."""
    text = Text("rings: ", style="dim")
    done = view.stages_passed
    for i, ring in enumerate(view.rings):
        if i:
            text.append(" → ", style="dim")
        if i < done:
            text.append(ring, style="green")
        elif i == view.stage and not view.finished:
            text.append(ring, style="bold")
        elif i == view.stage and view.phase == "rolled_back":
            text.append(ring, style="bold red")
        else:
            text.append(ring, style="dim")
    return text


def _arms(view: FlagView) -> Table:
    title = "this stage" if view.live else "last comparison"
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), title=None, show_edge=False)
    table.add_column(title, no_wrap=True)
    for name in ("exposures", "requests", "errors", "error rate"):
        table.add_column(name, justify="right", no_wrap=True)
    for name, arm in (("treatment", view.treatment), ("control", view.control)):
        table.add_row(name, *_arm_cells(arm))
    return table


def _arm_cells(arm: ArmView) -> tuple[str, str, str, str]:
    return f"{arm.exposures:,}", f"{arm.requests:,}", f"{arm.errors:,}", rate(arm.error_rate)


def _advisor(view: FlagView) -> Text:
    advice = view.advisor
    assert advice is not None  # the caller checked
    text = Text(advisor_name(advice.model), style="bold")
    rationale = " ".join(advice.rationale.split())
    if len(rationale) > RATIONALE_CHARS:
        rationale = rationale[: RATIONALE_CHARS - 1] + "…"
    if advice.action == "unavailable":
        text.append(f" unavailable: {rationale}")
        return text
    text.append(f" says {advice.action}")
    if advice.confidence is not None:
        text.append(f" (confidence {advice.confidence:.2f})")
    if advice.incoherence:
        text.append(f"; {INCOHERENT}: ", style="bold")
        text.append(advice.incoherence)
    elif rationale:
        text.append("; advisor's rationale: ")
        text.append(f'"{rationale}"', style="italic")
    return text


# -- the summary -----------------------------------------------------------------------

SUMMARY_COLUMNS = (
    "flag",
    "final phase",
    "final %",
    "stages passed",
    "last ring",
    "rollback reason",
    "decisions",
    "advisor opinions",
)


def render_summary(views: Sequence[FlagView]) -> RenderableType:
    """The end-of-run table; one row per flag, or one small table per flag when narrow."""
    return _FitWidth(_summary_table(views), _summary_cards(views))


def _summary_row(view: FlagView) -> tuple[str, ...]:
    stages = f"{view.stages_passed}/{view.stages}" if view.stages else NO_VALUE
    return (
        view.flag,
        view.phase,
        percent(view.percent),
        stages,
        view.ring or NO_VALUE,
        view.rollback_reason or NO_VALUE,
        str(view.decisions),
        advice_counts(view),
    )


def _summary_table(views: Sequence[FlagView]) -> Table:
    """Every column as wide as its longest value; the rollback reason takes the rest."""
    rows = [_summary_row(view) for view in views]
    table = Table(
        title="Summary",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        expand=True,
    )
    for i, name in enumerate(SUMMARY_COLUMNS):
        if name == "rollback reason":
            table.add_column(name, ratio=1, min_width=REASON_MIN_WIDTH)
            continue
        values = [row[i] for row in rows]
        if name == "advisor opinions":  # a list of counts: one per line if need be
            values = [word for value in values for word in value.split()]
        table.add_column(name, width=max(_longest_word(name), *map(len, values)))
    for view, row in zip(views, rows, strict=True):
        table.add_row(*row, style=PHASE_STYLES.get(view.phase, ""))
    return table


def _longest_word(text: str) -> int:
    return max(len(word) for word in text.split())


def _summary_cards(views: Sequence[FlagView]) -> Group:
    cards: list[RenderableType] = [Text("Summary", style="italic")]
    for view in views:
        card = Table(box=box.ROUNDED, show_header=False, padding=(0, 1))
        card.add_column("field", no_wrap=True, style="dim")
        card.add_column("value", overflow="fold")
        for name, value in zip(SUMMARY_COLUMNS, _summary_row(view), strict=True):
            card.add_row(name, Text(value, style=PHASE_STYLES.get(view.phase, "")))
        cards.append(card)
    return Group(*cards)


class _FitWidth:
    """Renders ``wide`` where it fits, else ``narrow``."""

    def __init__(self, wide: Table, narrow: RenderableType) -> None:
        self.wide, self.narrow = wide, narrow

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        needed = Measurement.get(console, options.update(width=10_000), self.wide).minimum
        yield self.wide if needed <= options.max_width else self.narrow


# -- plain log lines -------------------------------------------------------------------


def status_line(elapsed_s: float, view: FlagView) -> str:
    """One flag's state in one line, for ``--plain``."""
    head = f"[{elapsed_s:6.1f}s] {view.flag}: {view.phase}"
    if not view.stages:
        return f"{head}, {view.note}"
    t, c = view.treatment, view.control
    ring = f", ring {view.ring}" if view.ring else ""
    return (
        f"{head}, {stage_label(view.stage, view.stages, view.stage_percent)}{ring}, "
        f"exposures T {t.exposures:,} C {c.exposures:,}, "
        f"error rate T {rate(t.error_rate)} C {rate(c.error_rate)}; {error_test_text(view)}"
    )


def message_lines(elapsed_s: float, message: dict[str, Any]) -> Iterator[str]:
    """The lines ``--plain`` prints for a published decision or alert."""
    at = f"[{elapsed_s:6.1f}s]"
    kind, flag = message.get("type"), message.get("flag", "")
    if kind == "alert":
        severity, what = message.get("severity", ""), message.get("kind", "")
        yield f"{at} ALERT {severity} {what}: {message.get('summary', '')}"
    elif kind == "decision":
        where = f" {decided_at(message)}" if decided_at(message) else ""
        read = Evidence.read(message.get("evidence"))
        ring = read.audience
        where += f", ring {ring.text()}" if ring is not None else ""
        action, outcome = message.get("action", ""), message.get("outcome", "")
        yield f"{at} {flag}: {action} {outcome}{where}: {message.get('reason', '')}"
        advice = read.advisor
        if advice is not None:
            yield f"{at} {flag}: {advice_text(advice, rationale_chars=RATIONALE_CHARS)}"
