"""Forward moves wait for a release window; nothing else does.

The machine asks :func:`forward` before it advances a stage, completes a
watch, or accepts ``promote`` or ``approve``. Outside the windows a gate's
advance waits: the rollout stays where it is, ``window_wait`` says why and
when it may next move, and one ``wait`` decision is recorded when the wait
begins (not on every gate). While the plan's error budget burns (its
``burn_rate`` holds, :attr:`~controller.core.wire.ErrorBudget.holds`, or cannot be
read) a gate's advance waits the same way, with a reason that begins ``error_budget``,
and goes on at the first gate after it stops: a deny window that opens and closes
with the service's health. While a flag the plan requires is not served to the
rollout's audience (:func:`~controller.core.rollouts.prerequisite_wait`) a gate's
advance waits too, with a reason that begins ``prerequisite``, and goes on at the
first gate after the parent serves it. Rollbacks, kills, aborts, pauses and every
automatic protection never pass through here. Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from controller.core.machine.transitions import Cause, Step, decision, rejected
from controller.core.rollouts import (
    ERROR_BUDGET,
    PREREQUISITE,
    CommandInput,
    Rollout,
    Window,
    may_move_forward,
    next_opening,
    waiting_reason,
)
from controller.core.wire import ErrorBudget, RolloutEvidence, WindowWait


def windows_of(state: Rollout, team: tuple[Window, ...]) -> tuple[Window, ...]:
    """The plan's windows; a plan that names none takes the team's (``[]`` names none)."""
    return state.plan.windows if state.plan.windows is not None else team


def forward(
    state: Rollout,
    now: datetime,
    team: tuple[Window, ...],
    move: Callable[[Rollout], Step],
    *,
    budget: ErrorBudget | None = None,
    held: str | None = None,
) -> Step:
    """``move`` the rollout forward if a window allows it now, the error budget does
    (``budget``, the gate's reading of it) and so do the flags it requires (``held``: why
    they do not), else wait with the reason."""
    windows = windows_of(state, team)
    verdict = may_move_forward(windows, now)
    if verdict.allowed and budget is not None and budget.holds:
        return _wait(state, now, budget.reason, ERROR_BUDGET, RolloutEvidence(error_budget=budget))
    if verdict.allowed and held is not None:
        return _wait(state, now, held, PREREQUISITE, RolloutEvidence())
    if verdict.allowed:
        ready = state if state.window_wait is None else _cleared(state, now)
        return move(ready)
    reason = f"{waiting_reason(windows, now)} ({verdict.reason})"[:500]
    if state.window_wait == reason:
        return state, []
    waiting = state.model_copy(update={"window_wait": reason, "updated_at": now})
    if state.window_wait is not None:  # the wait goes on; only its wording moved
        return waiting, []
    opens = next_opening(windows, now)
    wait = WindowWait(
        reason=verdict.reason,
        decided_by=verdict.window,
        opens_at=opens.isoformat() if opens is not None else None,
    )
    evidence = RolloutEvidence(window=wait)
    return waiting, [decision(state, waiting, "wait", Cause("gate", reason, None, evidence))]


def _wait(state: Rollout, now: datetime, why: str, prefix: str, evidence: RolloutEvidence) -> Step:
    """Wait while the error budget burns or a prerequisite is not served (the reason begins
    with ``prefix``): one ``wait`` decision when the wait begins."""
    reason = why[:500]
    if state.window_wait == reason:
        return state, []
    waiting = state.model_copy(update={"window_wait": reason, "updated_at": now})
    if state.window_wait is not None and state.window_wait.startswith(prefix):
        return waiting, []  # the wait goes on; only its wording moved
    return waiting, [decision(state, waiting, "wait", Cause("gate", reason, None, evidence))]


def budget_eased(
    state: Rollout, now: datetime, budget: ErrorBudget | None, held: str | None = None
) -> Rollout:
    """``state`` without its wait on the error budget once the budget no longer holds, or
    on a prerequisite once it is served (the gate holds for its own reasons meanwhile):
    what people read then is the gate's hold."""
    wait = state.window_wait or ""
    on_budget = wait.startswith(ERROR_BUDGET) and not (budget is not None and budget.holds)
    on_parent = wait.startswith(PREREQUISITE) and held is None
    return _cleared(state, now) if on_budget or on_parent else state


def forward_command(state: Rollout, cmd: CommandInput, move: Callable[[Rollout], Step]) -> Step:
    """A person's forward move: done inside the windows, refused with the reason outside."""
    windows = windows_of(state, cmd.team_windows)
    verdict = may_move_forward(windows, cmd.now)
    if verdict.allowed:
        return move(state if state.window_wait is None else _cleared(state, cmd.now))
    why = f"{verdict.reason}; {waiting_reason(windows, cmd.now)}"[:500]
    return state, [rejected(state, cmd, why)]


def _cleared(state: Rollout, now: datetime) -> Rollout:
    return state.model_copy(update={"window_wait": None, "updated_at": now})
