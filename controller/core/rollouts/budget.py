"""Whether forward moves wait on the plan's error budget, from its burn rate as read.

The plan's burn rate comes in tiers joined by OR, each a threshold over windows joined
by AND (:class:`~controller.core.metrics_source.BurnRate`, the multiwindow,
multi-burn-rate alert of *The Site Reliability Workbook*, ch. 5). :func:`error_budget`
holds while any tier burns, and while any window's burn rate could not be read: an
unknown burn is no health, whatever the other windows say. Its reason names the first
tier that burns and its burn rate over each window; the evidence keeps every tier. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.core.metrics_source import Tier
from controller.core.rollouts.moving import ERROR_BUDGET
from controller.core.rollouts.plan import Plan
from controller.core.wire import ErrorBudget, TierBurn

NOT_READ = "not read"
"""Why a window the gate was given no reading for cannot be read."""


def error_budget(plan: Plan, burns: Mapping[str, float | str]) -> ErrorBudget | None:
    """Whether forward moves wait on the plan's burn rate, read over each window (a
    number, or why it could not be read; a window not in ``burns`` was not read)."""
    if plan.burn_rate is None:
        return None
    tiers = plan.burn_rate.tier_list()
    read = {name: burns.get(name, NOT_READ) for name in plan.burn_rate.named_windows()}
    shown = [_tier(tier, read) for tier in tiers]
    problems = {w: v[:300] for w, v in read.items() if isinstance(v, str)}
    fired = next((i for i, tier in enumerate(shown) if tier.burns), None)
    return ErrorBudget(
        holds=fired is not None or bool(problems),
        reason=f"{ERROR_BUDGET}: {_why(tiers, shown, read, fired)}",
        above=tiers[fired or 0].above,
        windows={w: (round(v, 6) if isinstance(v, float) else None) for w, v in read.items()},
        **({"problems": problems} if problems else {}),
        tiers=shown,
    )


def _tier(tier: Tier, read: Mapping[str, float | str]) -> TierBurn:
    values = [read[name] for name in tier.names()]
    burns = None
    if not any(isinstance(v, str) for v in values):
        burns = all(isinstance(v, float) and v > tier.above for v in values)
    return TierBurn(above=tier.above, windows=list(tier.names()), burns=burns)


def _why(
    tiers: tuple[Tier, ...],
    shown: list[TierBurn],
    read: Mapping[str, float | str],
    fired: int | None,
) -> str:
    """The first tier that burns, else the windows that cannot be read, else each tier's
    burn rate under its threshold; a plan of one tier is told without tiers."""
    several = len(tiers) > 1
    if fired is not None:
        where = f" of tier {fired + 1} of {len(tiers)}" if several else ""
        tier = tiers[fired]
        rates = _rates(tier, read)
        return f"the burn rate is above {tier.above:g} over every window{where} ({rates})"
    unread = [i for i, tier in enumerate(shown) if tier.burns is None]
    if unread:
        names = ", ".join(w for w, v in read.items() if isinstance(v, str))
        which = ", ".join(str(i + 1) for i in unread)
        where = f" (tier {which} of {len(tiers)})" if several else ""
        return f"the burn rate over {names} cannot be read{where}: not taken as healthy"
    if not several:
        return (
            f"the burn rate is not above {tiers[0].above:g} over every window"
            f" ({_rates(tiers[0], read)})"
        )
    each = "; ".join(f"above {t.above:g}: {_rates(t, read)}" for t in tiers)
    return f"no tier's burn rate is above its threshold over every window ({each})"


def _rates(tier: Tier, read: Mapping[str, float | str]) -> str:
    """``1h 20.06, 5m 16.00``: the tier's burn rate over each of its windows."""
    return ", ".join(f"{w} {_rate(read[w])}" for w in tier.names())


def _rate(value: float | str) -> str:
    return f"{value:.2f}" if isinstance(value, float) else "unread"
