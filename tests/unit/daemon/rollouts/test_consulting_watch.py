"""Which gates ask the advisor: never a watch after 100%, which the clock ends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest

from controller.core.rollouts.rollout import Phase, Rollout, Verdict, VerdictKind
from controller.daemon.metrics import Metrics
from controller.daemon.rollouts.consulting import Consultations
from controller.settings import LlmSettings
from tests.unit.core.machine.test_machine import NOW
from tests.unit.core.machine.test_machine_watch import with_watch


async def _apply(_flag: str, _event: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("rollout", "asked"),
    [
        (with_watch(Phase.RUNNING), True),  # the last stage, before its watch
        (with_watch(Phase.RUNNING, watch_until=NOW + timedelta(hours=1)), False),
        (with_watch(Phase.RUNNING, watch_until=NOW), False),
        (with_watch(Phase.PAUSED), False),
    ],
)
def test_the_advisor_is_not_asked_during_a_watch(rollout: Rollout, asked: bool) -> None:
    consultations = Consultations(
        advisor=cast(Any, object()),
        llm=LlmSettings(mode="gating"),
        metrics=Metrics(),
        states=cast(Any, None),
        aggregates=cast(Any, None),
        apply=_apply,
        clock=lambda: NOW,
    )
    verdict = Verdict(VerdictKind.ADVANCE, "guardrails hold")
    assert consultations.needs_advice(rollout, verdict, NOW) is asked
