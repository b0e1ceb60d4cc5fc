"""Hostile answers through the whole reading path: a local server answers each flag's
queries with something no guardrail may use, and each flag's gate holds, saying why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest_asyncio

from controller.adapters.memory import MemoryAggregates, MemoryControl, MemoryOutputs, MemoryStates
from controller.adapters.prometheus import PrometheusSource
from controller.core.machine import evaluate
from controller.core.rollouts.rollout import VerdictKind
from controller.daemon.rollouts import SourceReadings, build_engine
from controller.settings import EngineSettings, PrometheusSettings, TopicSettings
from tests.dripping import Dripper, canned
from tests.unit.daemon.test_engine import NoDeadLetters
from tests.unit.daemon.test_sources import start
from tests.waiting import eventually


def vector(value: str) -> bytes:
    series = [
        {"metric": {"rc_arm": arm, "rc_role": role}, "value": [1, value]}
        for arm in ("treatment", "control")
        for role in ("count", "total")
    ]
    return orjson.dumps({"status": "success", "data": {"resultType": "vector", "result": series}})


HOSTILE: dict[str, tuple[bytes, str]] = {
    "huge": (canned(200, b" " * (50 * 1024 * 1024)), "over the 1048576-byte limit"),
    "nan": (canned(200, vector("NaN")), "the value is NaN"),
    "inf": (canned(200, vector("+Inf")), "the value is infinite"),
    "wrongtype": (
        canned(200, b'{"status":"success","data":{"resultType":"vector","result":[{"value":7}]}}'),
        'a sample is not [time, "value"]',
    ),
    "redirect": (
        b"HTTP/1.1 302 Found\r\nLocation: https://sso.example/login\r\nContent-Length: 0\r\n\r\n",
        "a redirect (302) to 'https://sso.example/login', not followed",
    ),
    "login": (
        canned(200, b"<html><form>Sign in</form></html>", "text/html"),
        "status 200 with content type 'text/html', not JSON",
    ),
}


@pytest_asyncio.fixture
async def hostile() -> AsyncIterator[str]:
    async def answer(_method: str, _path: str, _headers: dict[str, str], body: bytes) -> bytes:
        flag = next(f for f in HOSTILE if f"%22{f}%22".encode() in body)
        return HOSTILE[flag][0]

    server = Dripper(answer)
    url = await server.start()
    try:
        yield url
    finally:
        await server.close()


async def test_each_hostile_answer_holds_its_flag_with_a_reason(hostile: str) -> None:
    now = datetime.now(UTC)
    settings = PrometheusSettings(
        url=hostile, interval_seconds=0.05, query_timeout_seconds=5, settle_seconds=0
    )
    states = MemoryStates()
    async with PrometheusSource(settings) as source:
        sources = SourceReadings(
            source=source, settings=settings, clock=lambda: now, alert=lambda _f, _a: None
        )
        engine = build_engine(
            settings=EngineSettings(),
            topics=TopicSettings(),
            states=states,
            aggregates=MemoryAggregates(),
            outputs=MemoryOutputs(),
            dead_letters=NoDeadLetters(),
            clock=lambda: now,
            sources=sources,
        )
        async with sources:
            for flag in HOSTILE:
                await engine.rollouts.apply(flag, start(flag))
            now += timedelta(seconds=30)
            await engine.gates.run_pass(MemoryControl(set(HOSTILE)), full=True)

            async def held(flag: str) -> str:
                rollout = (await states.load(flag)).rollout
                assert rollout is not None
                assert rollout.stage == 0
                verdict = evaluate(rollout, await MemoryAggregates().read(flag, [1]), now,
                                   sources.view(rollout, now))  # fmt: skip
                assert verdict.kind is VerdictKind.HOLD
                return verdict.reason

            for flag, (_, reason) in HOSTILE.items():

                async def shows(f: str = flag, r: str = reason) -> str:
                    why = await held(f)
                    assert r in why, why
                    return why

                why = await eventually(shows, timeout=30, what=f"{flag} held with its reason")
                assert why.startswith("error_rate from ")
