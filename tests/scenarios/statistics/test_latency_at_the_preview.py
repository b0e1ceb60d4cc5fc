"""A p99 regression of exactly the preview's figure, and one bot that decides a metric.

The plan's one compared stage serves 50% for 40 s; its guardrails are p99 latency and
error rate. What that stage catches with 80% power at 200 requests a second, one request
per unit and a log-normal latency of median 20 ms and sigma 0.3 (``rolloutctl plan validate
--traffic 200/s --requests-per-unit 1 --design-effect 1 --latency 20/40.3``: +9% on p99) is
computed here as the command computes it, with
:func:`~controller.core.stats.power.stage_preview`. On the real daemon:

* **At the figure.** Treatment is slower by exactly that figure throughout (every request
  of a log-normal latency times 1 + the figure, as the preview models a regression): the
  flag is rolled back on ``latency_p99``, by the always-valid boundary on the way or by the
  final look at the stage's end (the evidence's ``decided_by`` says which).
* **With a bot.** The same traffic, and one unit in treatment sending 40% of the arm's
  requests, each slow (about 250 ms) and failing 3% of them: p99 cannot be bounded on
  units (one unit decides it), so the stage waits, and the gate and ``rolloutctl status``
  (text and ``--json``) name the bot; the error rate counts its requests up to the cap both
  arms share, and its evidence's ``error_rate.capped`` names it.

**Why it is deterministic.** 80% power means one sample in five is missed. Each arm here
sends exactly :data:`PER_ARM` units, one request each, and its k-th unit has the k-th
latency of that arm's seeded draws and lands in bucket k mod 64 of the unit buckets (its id
is chosen among ids of that CRC-32 bucket that the rollout's salt assigns to the arm). The
sample is then the same in every run, whatever the salt and the timing. The app has sent it
all long before the stage's minimum ends, and a stage about to move waits until ingest has
counted every record on the broker, so the final look sees that whole sample:
:func:`test_the_seed_is_one_the_final_look_catches` takes the gate's test on it, at the look's
level, with no daemon. Of seeds 0 to 99, 70 are caught on the whole sample by either test
(the preview's 80% is for the same, at a design effect of exactly 1, where the gate's
estimate from 64 buckets of units scatters around 1 and is taken at least 1);
:data:`SEED` is one of them. A run's only other chance is the always-valid boundary
crossing earlier on part of the sample, which also rolls back.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from controller.core.common.histogram import BUCKET_COUNT, bucket_of
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.guardrails import fixed_horizon_test, guardrail_result
from controller.core.stats.power import Detectable, stage_preview
from controller.core.stats.regressing import Traffic
from controller.core.stats.units import (
    ERRORS,
    EXPOSURES,
    FINE_PER_BIN,
    KIND_COUNT,
    LATENCY,
    REQUESTS,
    UNIT_BUCKETS,
    UnitBuckets,
    unit_bucket,
)
from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm
from tests.scenarios.harness import Scenario
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
SEED = 0
PER_ARM = 4_000
"""Units (one request each) each arm sends: exactly, so the sample is the seed's alone."""
STAGE_S = 40
"""The compared stage's minimum: the app sends its sample in about a third of it."""
SEND_RATE = 600
"""Units a second the app sends, both arms together."""
MEDIAN_MS, SIGMA = 20.0, 0.3
"""Latency is log-normal: its median and the sigma of its logarithm."""
FAIL_EVERY = 100
"""Every 100th unit of either arm fails its request: 1%, the same in both arms."""
BOT_SHARE, BOT_MS, BOT_FAILS_EVERY = 0.4, 250.0, 33
"""The bot sends 40% of its arm's requests, each about 250 ms, every 33rd failing (3%)."""
BOT_REQUESTS = round(PER_ARM * BOT_SHARE / (1 - BOT_SHARE))
NAMED = "one bucket of units in treatment sent"


def plan() -> Plan:
    """One compared stage (50% for :data:`STAGE_S`), then everyone."""
    return Plan(
        stages=[
            Stage(
                percent=50,
                min_duration=timedelta(seconds=STAGE_S),
                # Most of the sample counted, whatever the unit count's 1% estimate says.
                min_units_per_arm=round(PER_ARM * 0.9),
            ),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[Guardrail(metric="latency_p99"), Guardrail(metric="error_rate")],
    )


def previewed() -> Detectable:
    """The p99 figure ``plan validate`` prints for the compared stage at this traffic."""
    traffic = Traffic(
        requests_per_s=2 * PER_ARM / STAGE_S,
        requests_per_unit=1.0,
        design_effect=1.0,
        error_rate=1 / FAIL_EVERY,
        latency_median_ms=MEDIAN_MS,
        latency_sigma=SIGMA,
    )
    found = stage_preview(plan(), 0, traffic).guardrails[0]
    assert (found.guardrail, found.effect is not None) == ("latency_p99", True), found
    return found


def latencies(arm: Arm, factor: float) -> list[float]:
    """The arm's units' latencies in ms, in the order they are sent."""
    rng = random.Random(f"{SEED}/{arm.value}")
    return [
        round(rng.lognormvariate(math.log(MEDIAN_MS), SIGMA) * factor, 2) for _ in range(PER_ARM)
    ]


def failed(k: int) -> bool:
    return k % FAIL_EVERY == 0


def sample(arm: Arm, factor: float) -> ArmAggregate:
    """The arm as the store counts it once every unit is in: the k-th in bucket k mod 64."""
    histogram, slots = [0] * BUCKET_COUNT, [0.0] * (UNIT_BUCKETS * KIND_COUNT)
    drawn = latencies(arm, factor)
    for k, latency in enumerate(drawn):
        fine, base = bucket_of(latency), (k % UNIT_BUCKETS) * KIND_COUNT
        histogram[fine] += 1
        for kind in (EXPOSURES, REQUESTS, LATENCY + fine // FINE_PER_BIN):
            slots[base + kind] += 1
        slots[base + ERRORS] += failed(k)
    return ArmAggregate(
        exposures=PER_ARM,
        units=PER_ARM,
        requests=PER_ARM,
        errors=sum(map(failed, range(PER_ARM))),
        latency_count=PER_ARM,
        latency_sum_ms=math.fsum(drawn),
        latency_histogram=tuple(histogram),
        buckets=UnitBuckets(tuple(slots)),
    )


def test_the_seed_is_one_the_final_look_catches() -> None:
    """The gate's test on the whole sample at the figure, at the final look's level: harm.
    On identical arms it shows none (the sample is no accident of the control's draws)."""
    rollout, guardrail = plan(), plan().guardrails[0]
    effect = previewed().effect
    assert effect is not None
    for factor, harm in ((1 + effect, True), (1.0, False)):
        data = FlagAggregates(
            flag="f",
            versions=frozenset({1}),
            treatment=sample(Arm.TREATMENT, factor),
            control=sample(Arm.CONTROL, 1.0),
        )
        result = guardrail_result(
            guardrail, data, rollout, alpha=rollout.sequential_alpha(guardrail.key)
        )
        assert result is not None
        look = fixed_horizon_test(result, rollout.final_alpha(guardrail.key))
        assert look.regressed is harm, (factor, look)


# -- the app -------------------------------------------------------------------------------


@dataclass
class Units:
    """Unit ids by CRC-32 bucket, each handed to the arm the rollout's salt assigns it."""

    flag: str
    salt: str
    percent: float
    waiting: dict[tuple[Arm, int], list[str]] = field(default_factory=dict)
    fresh: Iterator[str] = field(init=False)

    def __post_init__(self) -> None:
        self.fresh = (f"{self.flag}-u{i}" for i in range(10**9))

    def take(self, arm: Arm, bucket: int) -> str:
        """An unused id of ``bucket`` that the flag's salt assigns to ``arm``."""
        while not self.waiting.get((arm, bucket)):
            unit = next(self.fresh)
            served = assign(self.flag, self.salt, unit, self.percent)
            self.waiting.setdefault((served, unit_bucket(unit)), []).append(unit)
        return self.waiting[(arm, bucket)].pop()

    def treated(self, unit: str) -> bool:
        return assign(self.flag, self.salt, unit, self.percent) is Arm.TREATMENT


@dataclass
class App:
    """Serves one flag's sample: :data:`PER_ARM` units an arm, and a bot if asked."""

    scenario: Scenario
    flag: str
    factor: float
    bot: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    sent_by: float | None = None
    """Seconds from the stage's start to the last event flushed."""

    async def serve(self) -> None:
        state = await self.scenario.until(
            lambda: (s := self.scenario.state(self.flag)) and s["status"] == "rolling_out" and s,
            timeout=60,
            what=f"{self.flag} rolling out",
        )
        started = time.monotonic()
        units = Units(self.flag, state["salt"], state["percent"])
        draws = {arm: latencies(arm, self.factor if arm is Arm.TREATMENT else 1.0) for arm in Arm}
        bot = Bot(next(u for u in (f"bot-{i}" for i in range(10**6)) if units.treated(u)))
        run = uuid.uuid4().hex[:12]  # event ids unique across runs, as the contract says
        for k in range(PER_ARM):
            for arm in (Arm.TREATMENT, Arm.CONTROL):
                unit, latency = units.take(arm, k % UNIT_BUCKETS), draws[arm][k]
                await self._send(state, unit, arm, f"{run}-{arm.value}-{k}", latency, failed(k))
            while self.bot and bot.sent < round((k + 1) * BOT_REQUESTS / PER_ARM):
                latency, error = bot.next()
                key, first = f"{run}-bot-{bot.sent}", bot.sent == 1
                await self._send(state, bot.unit, Arm.TREATMENT, key, latency, error, first)
            behind = 2 * (k + 1) / SEND_RATE - (time.monotonic() - started)
            if behind > 0:
                await asyncio.sleep(behind)
        await self.scenario.flush()
        self.sent_by = time.monotonic() - started
        self.done.set()

    async def _send(
        self,
        state: dict[str, Any],
        unit: str,
        arm: Arm,
        key: str,
        latency: float,
        error: bool,
        exposed: bool = True,
    ) -> None:
        """The unit's exposure (unless already sent) and one request."""
        base = {
            "v": 1,
            "ts": int(time.time() * 1000),
            "flag": self.flag,
            "unit": unit,
            "arm": arm.value,
            "flag_version": state["version"],
        }
        bodies = [{"type": "request", "id": f"r{key}", "error": error, "latency_ms": latency}]
        if exposed:
            bodies.insert(0, {"type": "exposure", "id": f"x{key}"})
        for body in bodies:
            await self.scenario.send_event(orjson.dumps({**base, **body}), unit=unit)


@dataclass
class Bot:
    """One unit sending many slow requests, every :data:`BOT_FAILS_EVERY` th failing."""

    unit: str
    sent: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(f"{SEED}/bot"))

    def next(self) -> tuple[float, bool]:
        """The next request's latency and whether it fails."""
        latency = round(self.rng.lognormvariate(math.log(BOT_MS), 0.1), 2)
        self.sent += 1
        return latency, (self.sent - 1) % BOT_FAILS_EVERY == 0


# -- the operator's view -------------------------------------------------------------------


async def served(base: str, flag: str) -> dict[str, Any]:
    """``GET /rollouts/FLAG``: what ``rolloutctl status FLAG --json`` prints."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        answer = await http.get(f"/rollouts/{flag}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def rolloutctl(base: str, *args: str) -> str:
    """``rolloutctl ARGS`` of this checkout in its own process; its output."""
    env = {**os.environ, "ROLLOUTCTL_URL": base}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.ctl.app", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    return out.decode()


def bot_named(status: dict[str, Any]) -> dict[str, Any] | None:
    """The bot flag's status once the gate waits on p99 alone, naming the bot, with the
    error rate tested on the bot's requests capped; None before."""
    reason = status.get("verdict_reason") or ""
    test = ((status.get("evidence") or {}).get("guardrails") or {}).get("error_rate")
    if not reason.startswith(
        f"latency_p99 not yet tested: too few units to bound it on units yet: {NAMED}"
    ):
        return None
    return status if isinstance(test, dict) and test.get("capped") else None


# -- the scenario --------------------------------------------------------------------------


@pytest.mark.timeout(360)  # its own waits (up to 240 s) run out before pytest's limit
async def test_p99_slower_by_the_previews_figure_is_rolled_back_and_a_bot_is_named(
    scenario: Scenario,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
    scenario.start_daemon()
    figure = previewed()
    assert figure.effect is not None
    # Given an app whose treatment is slower by exactly the preview's p99 figure, and the
    # same app with a bot in treatment sending 40% of its requests
    apps = {
        "slower": App(scenario, "slower", 1 + figure.effect),
        "bot": App(scenario, "bot", 1 + figure.effect, bot=True),
    }
    for name, app in apps.items():
        scenario.run(name, app.serve())
    # When both are rolled out with the plan it was previewed for
    for flag in apps:
        await scenario.start(flag, plan())

    # Then the slower one is rolled back on its p99
    decided = await scenario.until(
        lambda: (
            scenario.observed.decision_where(flag="slower", action="rollback")
            or scenario.observed.decision_where(flag="slower", action="advance")
        ),
        timeout=240,
        what=f"slower (p99 {figure.text()}) decided",
    )
    assert decided["action"] == "rollback", decided["reason"]
    evidence = decided["evidence"]
    assert evidence["breach"] == "latency_p99", evidence
    assert evidence["decided_by"] in ("always_valid", "final_look"), evidence
    p99 = evidence["guardrails"]["latency_p99"]
    assert p99["unit_of_analysis"] == "unit", p99
    if evidence["decided_by"] == "final_look":
        # ...on the whole sample: what the seed was chosen on
        assert (apps["slower"].sent_by or math.inf) < STAGE_S
        arms = evidence["arms"]
        assert (arms["treatment"]["requests"], arms["control"]["requests"]) == (PER_ARM,) * 2
        assert evidence["final_look"]["tests"]["latency_p99"]["regressed"] is True, evidence
    else:
        assert p99["regressed"] is True, p99

    # And the bot's flag waits on p99, naming the bot: the gate's reason and the error
    # rate's test (tested, its variance carried by the bot's bucket)
    async def waiting_on_the_bot() -> dict[str, Any] | None:
        return bot_named(await served(base, "bot"))

    status = await scenario.until(
        waiting_on_the_bot, timeout=180, what="the bot's flag waiting on p99, the bot named"
    )
    assert apps["bot"].done.is_set()
    assert (status["verdict"], status["phase"]) == ("hold", "running"), status
    # p99's reason names the bot by its id, with its share of treatment's requests
    assert "unit bot-" in status["verdict_reason"], status["verdict_reason"]
    # the error rate counts the bot's requests up to the cap both arms share, and says so
    rate = status["evidence"]["guardrails"]["error_rate"]
    (capped,) = rate["capped"]
    assert (capped["arm"], capped["unit"][:4]) == ("treatment", "bot-"), rate
    assert capped["requests"] > rate["unit_cap"] > 0, rate
    assert status["evidence"]["guardrails"]["latency_p99"] == "insufficient data", status
    needs = status["needs"]["untested"]
    assert [n for n in needs if NAMED in n] == [status["verdict_reason"]], needs
    # ...and so does rolloutctl status, as served (--json) and in words
    printed = orjson.loads(await rolloutctl(base, "status", "bot", "--json"))
    assert printed["evidence"]["guardrails"]["error_rate"]["capped"][0]["arm"] == "treatment"
    assert NAMED in printed["verdict_reason"], printed["verdict_reason"]
    text = (await rolloutctl(base, "status", "bot")).splitlines()
    assert any("unit bot-" in line for line in text), text
    # the gate's reason is said once, in the next move, and the gate line gives its verdict
    assert any(NAMED in line for line in text if line.startswith("next move:")), text
    assert "gate:        hold" in text, text
    await scenario.stop_apps()
