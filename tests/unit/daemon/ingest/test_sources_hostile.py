"""Hostile answers through the whole reading path: a local server answers each flag's
queries with something no guardrail may use, and each flag's gate holds, saying why."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import orjson
import pytest_asyncio

from controller.adapters.memory import MemoryAggregates, MemoryControl, MemoryOutputs, MemoryStates
from controller.adapters.prometheus import PrometheusSource
from controller.core.machine import evaluate
from controller.core.rollouts.rollout import VerdictKind
from controller.daemon.rollouts import SourceReadings, build_engine
from controller.settings import EngineSettings, PrometheusSettings, TopicSettings
from tests.support.dripping import Dripper, canned
from tests.support.waiting import eventually
from tests.unit.daemon.ingest.test_sources import start
from tests.unit.daemon.rollouts.test_engine import NoDeadLetters


def vector(value: str, *, dated: float | None = None, sampled: float = 0.0) -> Answering:
    """Both arms' count and total at ``value``, the answer dated ``dated`` (default: when it
    was asked) and each arm's newest sample ``sampled`` seconds after it was asked."""

    def answer(asked: float) -> bytes:
        at = asked if dated is None else dated
        series = [
            {
                "metric": {"rc_arm": arm, "rc_role": role},
                "value": [at, str(asked + sampled) if role == "fresh" else value],
            }
            for arm in ("treatment", "control")
            for role in ("count", "total", "fresh")
        ]
        result = {"resultType": "vector", "result": series}
        return canned(200, orjson.dumps({"status": "success", "data": result}))

    return answer


Answering = Callable[[float], bytes]
"""An answer to a query asked at the given instant (Unix seconds)."""
HOSTILE: dict[str, tuple[bytes | Answering, str]] = {
    "huge": (canned(200, b" " * (50 * 1024 * 1024)), "over the 1048576-byte limit"),
    "nan": (vector("NaN"), "the value is NaN"),
    "inf": (vector("+Inf"), "the value is infinite"),
    "dated1970": (
        vector("10", dated=1.0),
        "an answer dated 1970-01-01T00:00:01+00:00, not when it was asked: implausible",
    ),
    "future": (vector("10", sampled=7200), "after it was asked: implausible"),
    "frozen": (vector("10", sampled=-600), "its newest sample is 600 s old"),
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
        answer = HOSTILE[flag][0]
        return answer if isinstance(answer, bytes) else answer(float(parse_qs(body)[b"time"][0]))

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
