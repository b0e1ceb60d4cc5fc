"""A guardrail on one named conversion, end to end: an OpenFeature app's
``client.track("checkout_completed", ...)`` reaches the daemon as that named conversion,
and the guardrail on it reads that name's conversions alone, while the guardrail that
names none reads every conversion, as it always did.

The app is ``tests/support/clients/openfeature_app.py`` (OpenFeature's SDK with our
provider), the daemon a real process on the real broker and Redis.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.stats.aggregates import Conversions
from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm
from tests.scenarios.apps.test_openfeature import FLAG, App, _counted
from tests.scenarios.harness import Scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UNITS = [f"user-{i}" for i in range(2000)]
CHECKOUT = "checkout_completed"


def guarded() -> Plan:
    """Half the units treated, until a command or a guardrail ends the stage."""
    return Plan(
        name="named",
        stages=[
            Stage(percent=50, min_duration=timedelta(minutes=10), min_units_per_arm=0),
            Stage(percent=100, min_units_per_arm=0),
        ],
        guardrails=[
            Guardrail(metric="conversion_rate"),
            Guardrail(metric="conversion_rate", conversion=CHECKOUT),
        ],
        alpha=0.001,  # the unnamed guardrail must not trip on noise
    )


def tracked(index: int, arm: Arm) -> str | None:
    """What the unit of ``index`` tracks: control units check out 4 in 10; treated units
    check out 1 in 10 and sign up 3 in 10, so each arm converts 4 in 10 in all."""
    tenth = index % 10
    if arm is Arm.CONTROL:
        return CHECKOUT if tenth < 4 else None
    return CHECKOUT if tenth < 1 else "signup" if tenth < 4 else None


async def test_a_named_conversion_guardrail_reads_its_own_name_alone(scenario: Scenario) -> None:
    # Given a rollout at 50% guarded on every conversion and on checkout_completed alone
    scenario.start_daemon()
    await scenario.start(FLAG, guarded())
    state = await scenario.until(
        lambda: next((s for s in scenario.observed.flag_states if s["flag"] == FLAG), None),
        timeout=30,
        what="the flag rolling out",
    )
    arms = [assign(FLAG, state["salt"], u, 50) for u in UNITS]
    events = [(u, tracked(i, a)) for i, (u, a) in enumerate(zip(UNITS, arms, strict=True))]
    converting = [(u, name) for u, name in events if name is not None]

    # When an OpenFeature app exposes every unit and tracks, in unit order, checkouts
    # falling from 4 in 10 to 1 in 10 in treatment while sign-ups make up the difference
    app = await App.start(scenario)
    try:
        answer = await app.ask(cmd="eval", version=state["version"], units=UNITS)
        assert answer.get("variants") == [a.value for a in arms], answer.get("error")
        units, names = [u for u, _ in converting], [n for _, n in converting]
        assert (await app.ask(cmd="track", units=units, names=names))["tracked"] == len(units)
        closed = await app.close()
    finally:
        app.kill()
    assert closed["dropped"] == 0

    # Then the daemon rolls back on the named guardrail alone
    rollback = await scenario.until(
        lambda: scenario.observed.decision_where(flag=FLAG, action="rollback"),
        timeout=60,
        what="a rollback on checkout_completed",
    )
    evidence = rollback["evidence"]
    assert evidence["breach"] == f"conversion_rate:{CHECKOUT}"
    assert rollback["reason"].startswith(f"conversion rate of {CHECKOUT} -")
    assert evidence["guardrails"]["conversion_rate"]["regressed"] is False
    assert evidence["guardrails"][f"conversion_rate:{CHECKOUT}"]["regressed"] is True
    assert set(evidence["arms"]["treatment"]["named_conversions"]) == {CHECKOUT}

    # And each name was counted apart, exactly, and every conversion in the total
    def count(name: str, arm: Arm) -> int:
        return sum(n == name and a is arm for (_, n), a in zip(events, arms, strict=True))

    aggregates = await _counted(
        scenario,
        state["version"],
        lambda a: a.treatment.conversions + a.control.conversions >= len(converting),
        "every tracked conversion",
    )
    for arm, counted in ((Arm.TREATMENT, aggregates.treatment), (Arm.CONTROL, aggregates.control)):
        want = {name: count(name, arm) for name in (CHECKOUT, "signup")}
        assert counted.named == {n: Conversions(c) for n, c in want.items() if c}
        assert counted.conversions == sum(want.values())
