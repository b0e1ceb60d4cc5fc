"""What a gate read from a metric source, in lines people read.

The gate's evidence keeps, under ``sources``, each Prometheus guardrail's (and
limit's, and the burn rate's) last reading: when it was taken, each query as it was asked, each
arm's numbers, or why it is missing or unusable. ``rolloutctl status``, the
console and the report show them with these lines. The evidence comes over the
network, so every part is read on its own and an odd one is left out; the
queries are shown as text, never interpreted (the console escapes them as it
escapes every text).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import islice

from controller.core.wire import GateEvidence, TierBurn

MAX_READS = 20
"""The most readings shown (a plan has at most 20 guardrails and 8 limits)."""
MAX_QUERY_CHARS = 600
"""A query is shown up to this many characters."""
NUMBERS = ("requests", "errors", "exposures", "conversions", "latency_count")


def budget_text(evidence: GateEvidence) -> str:
    """The plan's burn rate as the gate last read it, in one line; "" for a plan without
    one: ``burn rate 5m 20.1, 1h 16.0 (holds above 14.4 over every window): forward moves
    wait``; of several tiers, each with its windows: ``burn rate 14.4 over 1h 16.0 and 5m
    20.1 (burns) or 6 over 6h 3.0 and 30m 2.5: forward moves wait``."""
    budget = evidence.error_budget
    if budget is None:
        return ""
    windows = budget.windows if isinstance(budget.windows, Mapping) else {}
    state = {True: "forward moves wait", False: "forward moves may go on"}.get(budget.holds)
    tiers = [t for t in budget.tiers if isinstance(t, TierBurn)] if budget.tiers else []
    if len(tiers) > 1:
        read = " or ".join(_tier_text(t, windows) for t in islice(tiers, 4))
        return f"burn rate {read}: {state or 'unknown'}"
    read = ", ".join(f"{w} {_burn(v)}" for w, v in islice(windows.items(), 4)) or "?"
    above = _number(budget.above)
    bound = f" (holds above {above:g} over every window)" if above is not None else ""
    return f"burn rate {read}{bound}: {state or 'unknown'}"


def _tier_text(tier: TierBurn, windows: Mapping[str, object]) -> str:
    """``14.4 over 1h 16.0 and 5m 20.1 (burns)``; ``(unread)`` when a window was not."""
    above = _number(tier.above)
    names = tier.windows if isinstance(tier.windows, list) else []
    over = " and ".join(f"{str(w)[:8]} {_burn(windows.get(w))}" for w in islice(names, 4))
    state = {True: " (burns)", None: " (unread)"}.get(tier.burns, "")
    return f"{'?' if above is None else format(above, 'g')} over {over or '?'}{state}"


def _burn(value: object) -> str:
    number = _number(value)
    return "unread" if number is None else f"{number:.1f}"


def source_lines(evidence: GateEvidence) -> list[str]:
    """One block of lines per reading in the evidence's ``sources``; empty without any."""
    sources = evidence.sources
    reads = sources.reads if sources is not None else None
    if sources is None or not isinstance(reads, Mapping):
        return []
    where = sources.source
    lines = [f"read from {where if isinstance(where, str) else 'a metric source'}:"]
    expected = sources.expected_share
    for name, read in islice(reads.items(), MAX_READS):
        if isinstance(read, Mapping):
            lines += _read_lines(str(name)[:64], read, expected)
    return lines


def _read_lines(name: str, read: Mapping[str, object], expected: object) -> list[str]:
    missing = read.get("missing")
    if isinstance(missing, str):
        return [f"  {name}: missing: {missing[:300]}"]
    at = read.get("at")
    lines = [f"  {name}: read at {at if isinstance(at, str) else '?'}"]
    arms = read.get("arms")
    for arm, numbers in islice(arms.items(), 4) if isinstance(arms, Mapping) else []:
        lines.append(f"    {str(arm)[:16]}: {_numbers(numbers)}")
    share = read.get("request_share")
    if _number(share) is not None and _number(expected) is not None:
        lines.append(
            f"    request share of treatment {_percent(share)} (expected {_percent(expected)};"
            " shown, never tested: requests cluster by unit)"
        )
    if isinstance(value := read.get("value"), int | float) and not isinstance(value, bool):
        lines.append(f"    value {value:.6g}, bound {read.get('bound')}")
    problems = read.get("problems")
    for problem in islice(problems, 4) if isinstance(problems, list) else []:
        lines.append(f"    unusable: {str(problem)[:300]}")
    queries = read.get("queries")
    for role, asked in islice(queries.items(), 6) if isinstance(queries, Mapping) else []:
        for arm, text in islice(asked.items(), 2) if isinstance(asked, Mapping) else []:
            lines.append(
                f"    query {str(role)[:16]} ({str(arm)[:16]}): {str(text)[:MAX_QUERY_CHARS]}"
            )
    return lines


def _numbers(numbers: object) -> str:
    if not isinstance(numbers, Mapping):
        return "-"
    shown = [
        f"{value:,} {name.replace('_', ' ')}"
        for name in NUMBERS
        if isinstance(value := numbers.get(name), int) and not isinstance(value, bool)
    ]
    return ", ".join(shown) or "nothing counted"


def _number(value: object) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None  # type: ignore[arg-type]


def _percent(value: object) -> str:
    number = _number(value)
    return "?" if number is None else f"{number * 100:.3g}%"
