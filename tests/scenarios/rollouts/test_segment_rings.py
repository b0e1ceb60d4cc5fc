"""A ring on segments: OFREP and the Python SDK serve the segments' members alike.

Given the real daemon, broker and Redis and a rollout whose first stage is
the ring ``user_id in segment("beta") or user_id in segment("pros")`` (an id
list and a rule segment): before the segments exist nobody is in the ring (an
unknown segment matches nobody) over OFREP or in the SDK. Once an operator
puts ``beta`` with ``rolloutctl segment put``, the daemon's OFREP endpoints
serve treatment to its members and control to everyone else, exactly as an
app's ``FlagClient`` following the segments topic (``follow_segments``) and a
``FlagPoller`` polling ``/v1/segments`` (``poll_segments``) do, and the bulk
endpoint's ETag changes with the segment (a cached answer from before is not
reused). Putting the rule segment ``pros`` adds the contexts its rule
matches; replacing the list moves the ring with it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.core.rollouts.plan import Plan, parse_plan
from controller.core.wire.messages import Arm
from controller.sdk import FlagClient
from controller.sdk.poller import FlagPoller
from controller.settings import KafkaSettings
from tests.scenarios.harness import Scenario
from tests.scenarios.operators.test_rolloutctl import Operator
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
FLAG = "checkout.segment-ring"
PEOPLE = [
    {"targetingKey": f"user-{i}", "user_id": f"user-{i}", "plan": "pro" if i % 5 == 0 else "free"}
    for i in range(60)
]
BETA = [f"user-{i}" for i in range(0, 60, 3)]


def ring_plan() -> Plan:
    stages: list[dict[str, Any]] = [
        {"percent": 100, "audience": 'user_id in segment("beta") or user_id in segment("pros")'},
        {"percent": 100},
    ]
    for stage in stages:
        stage |= {"min_duration": timedelta(minutes=10), "min_units_per_arm": 0}
    return parse_plan({"name": "segment-ring", "stages": stages, "limits": {"error_rate": 0.05}})


async def _ofrep(http: httpx.AsyncClient) -> list[bool]:
    async def one(context: dict[str, Any]) -> bool:
        answer = await http.post(f"/ofrep/v1/evaluate/flags/{FLAG}", json={"context": context})
        assert answer.status_code == 200, answer.text
        value: bool = answer.json()["value"]
        return value

    return list(await asyncio.gather(*(one(c) for c in PEOPLE)))


async def _bulk_etag(http: httpx.AsyncClient) -> str:
    answer = await http.post("/ofrep/v1/evaluate/flags", json={"context": PEOPLE[0]})
    assert answer.status_code == 200, answer.text
    return answer.headers["ETag"]


@pytest.mark.timeout(240)
async def test_ofrep_and_the_sdk_serve_a_segment_ring_to_its_members(
    scenario: Scenario, tmp_path: Path
) -> None:
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")  # keys optional
    scenario.start_daemon()
    ctl = Operator(scenario, tmp_path, port)
    ctl.env["PYTHONPATH"] = str(ROOT)  # the rolloutctl of this tree, whatever is installed
    kafka = KafkaSettings(bootstrap_servers=scenario.bootstrap)
    await scenario.start(FLAG, ring_plan())
    url = f"http://127.0.0.1:{port}"
    client = FlagClient(
        kafka,
        topic=scenario.topics["flag_state"],
        follow_segments=True,
        segments_topic=scenario.topics["segments"],
    )
    poller = FlagPoller(url, interval=0.2, poll_segments=True, segments_interval=0.2)
    async with client, poller, httpx.AsyncClient(base_url=url, timeout=30) as http:

        def sdk() -> list[bool]:
            by_topic = [client.arm(FLAG, c["targetingKey"], c)[0] is Arm.TREATMENT for c in PEOPLE]
            by_http = [poller.arm(FLAG, c["targetingKey"], c)[0] is Arm.TREATMENT for c in PEOPLE]
            assert by_topic == by_http
            return by_topic

        def both_hold_the_flag() -> bool:
            return client.state(FLAG) is not None and poller.state(FLAG) is not None

        await scenario.until(both_hold_the_flag, timeout=30, what="the apps hold the flag")

        async def ofrep_knows_the_flag() -> bool:
            answer = await http.post(
                f"/ofrep/v1/evaluate/flags/{FLAG}", json={"context": PEOPLE[0]}
            )
            assert answer.status_code == 200, answer.text
            return True

        await scenario.until(ofrep_knows_the_flag, timeout=30, what="OFREP holds the flag")
        # Before the segment exists, its ring holds nobody
        assert await _ofrep(http) == [False] * len(PEOPLE)
        assert sdk() == [False] * len(PEOPLE)
        before = await _bulk_etag(http)

        # When the operator puts the segment
        ids_file = tmp_path / "beta.txt"
        ids_file.write_text("\n".join(BETA) + "\n")
        put = await ctl("segment", "put", "beta", "--ids-file", str(ids_file))
        assert put.code == 0, (put.out, put.err)
        want = [c["user_id"] in BETA for c in PEOPLE]

        # Then OFREP and the SDK serve exactly its members
        async def ofrep_serves(expected: list[bool] = want) -> bool:
            return await _ofrep(http) == expected

        await scenario.until(ofrep_serves, timeout=30, what="OFREP serves the segment")
        await scenario.until(lambda: sdk() == want, timeout=30, what="the SDK holds it")
        assert sum(want) == len(BETA)
        # And the bulk answer cached before is not reused
        assert await _bulk_etag(http) != before
        answer = await http.post(
            "/ofrep/v1/evaluate/flags",
            json={"context": PEOPLE[0]},
            headers={"If-None-Match": before},
        )
        assert answer.status_code == 200
        assert answer.json()["flags"][0]["value"] is True

        # When the rule segment is put, the contexts its rule matches join the ring
        pros = await ctl("segment", "put", "pros", "--rule", 'plan == "pro"')
        assert pros.code == 0, (pros.out, pros.err)
        wider = [c["user_id"] in BETA or c["plan"] == "pro" for c in PEOPLE]
        await scenario.until(
            lambda: ofrep_serves(wider), timeout=30, what="OFREP serves the rule segment"
        )
        await scenario.until(lambda: sdk() == wider, timeout=30, what="the SDK matches the rule")
        assert sum(wider) > sum(want)

        # When the list is replaced, the ring moves with it
        ids_file.write_text("user-1\n")
        replaced = await ctl("segment", "put", "beta", "--ids-file", str(ids_file))
        assert replaced.code == 0, (replaced.out, replaced.err)
        moved = [c["user_id"] == "user-1" or c["plan"] == "pro" for c in PEOPLE]
        await scenario.until(
            lambda: ofrep_serves(moved), timeout=30, what="OFREP serves the new version"
        )
        await scenario.until(lambda: sdk() == moved, timeout=30, what="the SDK follows")
