"""Holdouts: a stable share of units kept out of every flag that names the holdout.

A rollout's plan may name a holdout (``holdout: {name: q3-2026, percent: 2}``);
the flag state carries it to every client. A unit is *held out* when its
holdout bucket, hashed from the holdout's name alone, falls below the
holdout's threshold (:func:`controller.core.wire.bucketing.held_out`): it is
then served control by every flag naming the holdout, whatever the flag's
percent, rings or stage, with reason ``HOLDOUT`` and cohort ``holdout``, so its events are
counted apart from the rollout's arms (:mod:`controller.core.stats.folding`).

The holdout bucket is the flags' bucket function
(:func:`controller.core.wire.bucketing.bucket`) with ``~holdout`` in the
flag's place and the holdout's name as the salt: no flag key starts with
``~``, so it is independent of every flag's bucketing, and the same unit is
held out of every flag that names the holdout. Every flag naming one holdout
must give it the same percent: :func:`holdout_problems` is the check the
controller makes before a rollout starts, :func:`holdout_conflicts` the one
``rolloutctl validate`` makes of a directory's rollouts. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from controller.core.common import split

MAX_HOLDOUT_PERCENT = 50.0
"""The largest share a holdout may keep out: past half, the flags are the exception."""
HOLDOUT_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"

HoldoutName = Annotated[str, StringConstraints(pattern=HOLDOUT_NAME_PATTERN)]
"""A holdout's name: lower case letters, digits, ``.``, ``_`` and ``-``, at most 64."""


class Holdout(BaseModel):
    """A named holdout and the share of units it keeps out of every flag naming it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: HoldoutName = Field(description="The holdout's name, the same on every flag naming it.")
    percent: float = Field(
        gt=0.0,
        le=MAX_HOLDOUT_PERCENT,
        allow_inf_nan=False,
        description="The share of units held out, in percent (0.001% resolution), the same on"
        " every flag naming the holdout.",
    )


def holdout_problems(
    flag: str, holdout: Holdout | None, held: Mapping[str, Holdout | None]
) -> list[str]:
    """What starting the flag keyed ``flag`` with ``holdout`` would break, given the holdout
    of every flag held (key -> its holdout, or None): each flag of the same environment
    naming the holdout with another percent, in words. Empty when nothing would."""
    if holdout is None:
        return []
    where = split(flag)[1]
    return [
        f"holdout {holdout.name} is {other.percent:g}% on {split(key)[0]}, "
        f"not {holdout.percent:g}%: every flag naming it must give it the same percent"
        for key, other in sorted(held.items())
        if key != flag
        and other is not None
        and other.name == holdout.name
        and other.percent != holdout.percent
        and split(key)[1] == where
    ]


def holdout_conflicts(named: Mapping[str, Holdout | None]) -> list[str]:
    """Each holdout the flags of one environment (flag -> its holdout, or None) give more
    than one percent, in words, naming the flags giving each; empty when none does."""
    percents: dict[str, dict[float, list[str]]] = {}
    for flag, holdout in sorted(named.items()):
        if holdout is not None:
            percents.setdefault(holdout.name, {}).setdefault(holdout.percent, []).append(flag)
    return [
        f"holdout {name} is given "
        + " and ".join(f"{p:g}% ({', '.join(flags)})" for p, flags in sorted(given.items()))
        + ": every flag naming it must give it the same percent"
        for name, given in sorted(percents.items())
        if len(given) > 1
    ]
