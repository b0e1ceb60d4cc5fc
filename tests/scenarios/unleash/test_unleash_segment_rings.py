"""The same ring plan backed by Unleash, on segments: ``segment("staff")`` 100% →
``segment("beta")`` 100% → ``country == "TH"`` 25% → everyone.

The real daemon, broker and Redis, ``rolloutctl segment put`` (signed
commands) for the two id lists, a real ``unleash-server`` on PostgreSQL and
the real ``UnleashClient`` refreshing every second. The controller writes each
list into the ring's strategy as one ``IN`` constraint; after each refresh the
SDK serves exactly the arms the rules (with the segments) and Unleash's
bucketing say. A segment replaced while the rollout runs is written at once
(its change starts a sweep; the sweep interval here is an hour): its new
members are served, and it is no person's change.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Any

import mmh3
import pytest

from controller.core.rollouts.plan import Plan, parse_plan
from controller.core.rules.matching import Audience, IdSegments
from controller.core.rules.text import parse
from controller.dev.unleash import UnleashServer
from tests.scenarios.harness import Scenario
from tests.scenarios.operators.test_rolloutctl import Operator
from tests.scenarios.unleash.unleash_kit import App, Person, feature_name, rolling_at, serve_from
from tests.support.backing.services import free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
RINGS = [
    ('userId in segment("staff")', 100),
    ('userId in segment("beta")', 100),
    ('country == "TH"', 25),
    (None, 100),
]
STAFF = [f"user-{i}" for i in range(0, 1000, 50)]
BETA = [f"user-{i}" for i in range(7, 1000, 9)][:120]
MORE_BETA = [*BETA, *(f"user-{i}" for i in range(1, 1000, 97))]


def ring_plan(feature: str) -> Plan:
    stages = [
        {"percent": p, "min_duration": "1h", "min_units_per_arm": 20}
        | ({"audience": rule} if rule else {})
        for rule, p in RINGS
    ]
    return parse_plan(
        {
            "name": "unleash-segment-rings",
            "stages": stages,
            "limits": {"error_rate": 0.05},
            "backend": {"unleash": {"feature": feature}},
        }
    )


def contexts(count: int = 1000) -> list[dict[str, Any]]:
    pick = random.Random(26).choice
    out = []
    for i in range(count):
        context: dict[str, Any] = {"userId": f"user-{i}"}
        country = pick(["TH", "VN", "US", None])
        if country is not None:
            context["country"] = country
        out.append(context)
    return out


def expected(feature: str, stage: int, context: dict[str, Any], segments: IdSegments) -> bool:
    """For some ring so far, in its audience (segments included) and in its share."""
    bucket = mmh3.hash(f"{feature}:{context['userId']}".encode(), seed=0, signed=False) % 100 + 1
    for rule, percent in RINGS[: stage + 1]:
        inside = rule is None or Audience.of(parse(rule)).matches(context, segments)
        if inside and bucket <= percent:
            return True
    return False


async def _put(ctl: Operator, tmp_path: Path, name: str, ids: list[str]) -> None:
    ids_file = tmp_path / f"{name}.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    put = await ctl("segment", "put", name, "--ids-file", str(ids_file))
    assert put.code == 0, (put.out, put.err)


@pytest.mark.timeout(300)
async def test_a_ring_plan_on_segments_served_by_unleash_serves_their_members(
    scenario: Scenario, unleash_server: UnleashServer, person: Person, app: App, tmp_path: Path
) -> None:
    # Given a daemon serving from Unleash, and the segments staff and beta put by an operator
    feature, flag = feature_name(), "checkout.unleash-segment-rings"
    port = free_port()
    serve_from(scenario, unleash_server, sync_seconds=3600)  # decisions and segments nudge it
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
    scenario.start_daemon()
    ctl = Operator(scenario, tmp_path, port)
    ctl.env["PYTHONPATH"] = str(ROOT)
    await _put(ctl, tmp_path, "staff", STAFF)
    await _put(ctl, tmp_path, "beta", BETA)
    segments = IdSegments({"staff": frozenset(STAFF), "beta": frozenset(BETA)})
    # When the operator starts the ring plan and promotes it ring by ring
    await scenario.start(flag, ring_plan(feature))
    people = contexts()
    treated_before: set[str] = set()
    for stage in range(len(RINGS)):
        if stage:
            await scenario.send(scenario.command("promote", flag), flag=flag)
        rollout = await scenario.until(
            functools.partial(rolling_at, scenario, flag, stage), timeout=30, what=f"stage {stage}"
        )
        # Then the real SDK, once refreshed, serves each context the arm the rules say
        await app.serves_version(feature, rollout["version"])

        def agrees(stage: int = stage, held: IdSegments = segments) -> set[str]:
            served = {c["userId"] for c in people if app.flags.is_enabled(feature, dict(c))}
            want = {c["userId"] for c in people if expected(feature, stage, c, held)}
            assert served == want, (stage, len(served ^ want), sorted(served ^ want)[:5])
            return served

        treated = await eventually(agrees, timeout=30, what=f"the SDK to serve stage {stage}")
        if stage == 0:
            assert treated == set(STAFF)
        if stage == 1:
            assert treated == set(STAFF) | set(BETA)
        assert treated_before <= treated, sorted(treated_before - treated)[:5]
        treated_before = treated
        if stage == 1:
            # When the operator adds members to beta while its ring is served
            await _put(ctl, tmp_path, "beta", MORE_BETA)
            segments = IdSegments({"staff": frozenset(STAFF), "beta": frozenset(MORE_BETA)})

            # Then the sweep it starts writes it, and the SDK serves the new members too
            def widened() -> bool:
                served = {c["userId"] for c in people if app.flags.is_enabled(feature, dict(c))}
                return served == set(STAFF) | set(MORE_BETA)

            await eventually(widened, timeout=30, what="the SDK to serve beta's new members")
            treated_before = set(STAFF) | set(MORE_BETA)
    # And the admin API shows one strategy per ring; no change was taken for a person's
    now = await person.serving(feature)
    assert now is not None
    assert now["strategies"] == 4
    assert scenario.observed.alert_where(flag=flag, kind="backend_drift") is None
    assert scenario.observed.alert_where(flag=flag, kind="input_failed") is None
