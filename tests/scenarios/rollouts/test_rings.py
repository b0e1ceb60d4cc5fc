"""A ring rollout through the real daemon: staff → beta → Thailand 25% → everyone.

At each stage the Python SDK (Kafka ``FlagClient``), the OpenFeature
provider, the daemon's OFREP endpoint (asked over a few keep-alive
connections, many requests in flight) and the JavaScript client
(OpenFeature's server SDK with its OFREP provider, in Node) serve treatment
to exactly the units the stage's rules and percents say, for the same 10,000
contexts with mixed attributes; no unit goes back to control as the rings
widen. The test raises ``http.ofrep_requests_per_second`` (every request
comes from one address) so that no answer is a 429. The rings here read
attributes (``role``, ``beta``); a ring on a segment, over OFREP and the SDK,
is ``tests/scenarios/rollouts/test_segment_rings.py``.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from openfeature.evaluation_context import EvaluationContext

from controller.core.rollouts.plan import Plan, parse_plan
from controller.core.wire.bucketing import bucket
from controller.core.wire.messages import Arm, FlagState
from controller.sdk import FlagClient
from controller.sdk.flags import Listener
from controller.sdk.openfeature import RolloutProvider
from controller.settings import KafkaSettings
from tests.integration.ofrep.test_ofrep import ofrep_node  # noqa: F401 - a fixture
from tests.scenarios.harness import Scenario
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "checkout.rings"
CONTEXTS = 10_000
OFREP_CONNECTIONS = 8
"""Keep-alive connections the test's OFREP client holds to the daemon."""
OFREP_IN_FLIGHT = 64
"""OFREP requests the test keeps in flight over them (one request per context)."""
NODE_SCRIPT = Path(__file__).resolve().parents[2] / "node" / "ofrep_contexts.mjs"
STAGES: list[tuple[str | None, float]] = [
    ('role == "staff"', 100),
    ("beta == true", 100),
    ('country == "TH"', 25),
    (None, 5),
    (None, 25),
    (None, 50),
    (None, 100),
]


def ring_plan() -> Plan:
    stages: list[dict[str, Any]] = [
        {"percent": p, "min_duration": timedelta(minutes=10), "min_units_per_arm": 0}
        | ({} if rule is None else {"audience": rule})
        for rule, p in STAGES
    ]
    return parse_plan({"name": "rings", "stages": stages, "limits": {"error_rate": 0.05}})


def contexts(count: int) -> list[dict[str, Any]]:
    rng = random.Random(26)
    out = []
    for i in range(count):
        context: dict[str, Any] = {"targetingKey": f"user-{i}"}
        if rng.random() < 0.02:
            context["role"] = "staff"
        if rng.random() < 0.05:
            context["beta"] = rng.choice([True, "true", 1])  # only the boolean is beta
        country = rng.choice(["TH", "TH", "US", "DE", "th", None, 66])
        if country is not None:
            context["country"] = country
        out.append(context)
    return out


def expected(context: dict[str, Any], salt: str, stage: int) -> bool:
    """The rule and percents of the stages so far, written out plainly."""
    b = bucket(FLAG, salt, context["targetingKey"])
    everyone = max((p for rule, p in STAGES[3 : stage + 1] if rule is None), default=0)
    return (
        context.get("role") == "staff"
        or (stage >= 1 and context.get("beta") is True)
        or (stage >= 2 and context.get("country") == "TH" and b < 25_000)
        or b < everyone * 1000
    )


class _Source:
    """The provider's flag source over a started client; its events go nowhere."""

    def __init__(self, client: FlagClient) -> None:
        self.book = client

    @property
    def loaded(self) -> bool:
        return self.book.ready.is_set()

    def state(self, flag: str) -> FlagState | None:
        return self.book.state(flag)

    def arm(self, flag: str, unit: str) -> tuple[Arm, int]:
        return self.book.arm(flag, unit)

    def on_change(self, listener: Listener) -> None:
        self.book.on_change(listener)

    def exposure(self, *args: Any, **kwargs: Any) -> str | None:
        return None

    request = conversion = exposure


async def _ofrep(base: str, people: list[dict[str, Any]]) -> list[bool]:
    """Each context's value over OFREP: :data:`OFREP_IN_FLIGHT` requests at a time over
    :data:`OFREP_CONNECTIONS` keep-alive connections.

    aiohttp's client, which costs this process far less per request than httpx's
    (the test shares the machine with the daemon); a session of its own per pass,
    as the daemon closes a connection idle for ``http.header_timeout_seconds``.
    """
    values: list[bool | None] = [None] * len(people)
    todo = iter(range(len(people)))
    url = f"{base}/ofrep/v1/evaluate/flags/{FLAG}"

    async def worker(http: aiohttp.ClientSession) -> None:
        for i in todo:  # one iterator shared by the workers: each context is asked once
            async with http.post(url, json={"context": people[i]}) as answer:
                body = await answer.json()
                assert answer.status == 200, body
                values[i] = body["value"]

    connector = aiohttp.TCPConnector(limit=OFREP_CONNECTIONS)
    # Bounds on the daemon (connecting, then each read), not on the wait for one of the
    # connections: a request can queue behind the others for long on a busy machine.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await asyncio.gather(*(worker(http) for _ in range(OFREP_IN_FLIGHT)))
    return [bool(v) for v in values]


async def _node(node: str, home: Path, base: str, contexts: Path) -> dict[str, Any]:
    """The JavaScript client's answers for every context in ``contexts``."""
    done = await asyncio.to_thread(
        subprocess.run,
        [node, str(NODE_SCRIPT), base, FLAG, str(contexts)],
        capture_output=True,
        text=True,
        timeout=180,
        env={"OFREP_NODE_HOME": str(home), "PATH": str(Path(node).parent)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


@pytest.mark.timeout(600)  # 7 stages x 10,000 contexts x (SDK, OpenFeature, OFREP, Node)
async def test_a_ring_rollout_serves_exactly_its_rings_and_no_unit_flaps(
    scenario: Scenario,
    node: str,
    ofrep_node: Path,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    port = free_port()
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__HOST="127.0.0.1",  # keys optional
        RC_HTTP__OFREP_REQUESTS_PER_SECOND="1000000",  # one address asks for all contexts
    )
    scenario.start_daemon()
    people = contexts(CONTEXTS)
    people_file = tmp_path / "contexts.json"
    people_file.write_text(json.dumps(people), encoding="utf-8")
    base = f"http://127.0.0.1:{port}"
    kafka = KafkaSettings(bootstrap_servers=scenario.bootstrap)
    await scenario.start(FLAG, ring_plan())
    treated_before: set[str] = set()
    async with (
        FlagClient(kafka, topic=scenario.topics["flag_state"]) as client,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        provider = RolloutProvider(_Source(client), exposures="off")
        for stage in range(len(STAGES)):
            # Given the daemon at the stage, and the app holding its state
            state: dict[str, Any] = await scenario.until(
                lambda s=stage: _at_stage(scenario, s),  # type: ignore[misc]
                timeout=30,
                what=f"stage {stage}",
            )
            await scenario.until(
                lambda v=state["version"]: (  # type: ignore[misc]
                    client.state(FLAG) is not None and client.state(FLAG).version == v  # type: ignore[union-attr]
                ),
                timeout=30,
                what=f"the app at version {state['version']}",
            )
            assert state["percent"] == 0.0
            assert len(state["rings"]) >= 1

            async def ofrep_at(version: int = state["version"]) -> bool:
                answer = await http.post(
                    f"/ofrep/v1/evaluate/flags/{FLAG}", json={"context": people[0]}
                )
                return bool(answer.json().get("metadata", {}).get("flag_version") == version)

            await scenario.until(ofrep_at, timeout=30, what="OFREP at the stage's version")
            want = [expected(c, state["salt"], stage) for c in people]
            # Then the SDK, the OpenFeature provider, OFREP and the JavaScript client serve
            # exactly those units
            sdk = [client.arm(FLAG, c["targetingKey"], c)[0] is Arm.TREATMENT for c in people]
            assert sdk == want, f"the SDK at stage {stage}"
            of = [
                provider.resolve_boolean_details(
                    FLAG, False, EvaluationContext(c["targetingKey"], c)
                ).value
                for c in people
            ]
            assert of == want, f"the OpenFeature provider at stage {stage}"
            assert await _ofrep(base, people) == want, f"OFREP at stage {stage}"
            js = await _node(node, ofrep_node, base, people_file)
            assert (js["versions"], js["errors"]) == ([state["version"]], [])
            assert js["values"] == want, f"the JavaScript client at stage {stage}"
            # And nobody treated before is back on control
            treated = {c["targetingKey"] for c, on in zip(people, want, strict=True) if on}
            assert treated_before <= treated, f"units flipped back at stage {stage}"
            treated_before = treated
            if stage < len(STAGES) - 1:
                await scenario.send(scenario.command("promote", FLAG), flag=FLAG)
    assert len(treated_before) == len(people)


def _at_stage(scenario: Scenario, stage: int) -> dict[str, Any] | None:
    states = [s for s in scenario.observed.flag_states if s["flag"] == FLAG]
    if not states or states[-1]["stage"] != stage:
        return None
    if states[-1]["status"] not in ("rolling_out", "completed"):
        return None
    return states[-1]
