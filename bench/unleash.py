"""Unleash latency: from the controller's decision to Unleash serving it.

Starts a real unleash-server (npm, ``make unleash``) on a fresh PostgreSQL
database, and runs the controller's engine (in-memory state) with the
Unleash sync (the real admin client) in this process, so the decision's
instant is known exactly. Each round starts an Unleash-backed rollout, then:

* promotes it 5% → 25% and measures decision → the admin API shows 25%;
* rolls it back and measures decision → the admin API shows the
  environment off, and decision → a real ``UnleashClient`` (refreshing every
  ``--refresh`` seconds) serves the fallback to a unit it treated before;
* kills another rollout while a third feature's reads drip in one byte every
  2 s, and measures decision → the admin API shows it off: a slow
  answer for one feature must not hold back another flag's kill.

The controller reaches Unleash through a small proxy (the one the tests
use), which forwards every call and drips only the slow feature's reads.

Baseline, measured in the same run: one admin API read of the feature (the
floor of any "visible in the admin API" time). Target: rollback → off p95
under 1 s, and the kill beside a dripping read within 1 s too (its ratio to
the plain rollback near 1). The SDK's figure is dominated by its refresh interval (15 s by
default in apps; uniform in [0, refresh] plus a round trip). The last line
printed is one JSON object.

    python bench/unleash.py [--rounds 20] [--refresh 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from UnleashClient.clients.unleash_client import UnleashClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.adapters.memory import (
    MemoryAggregates,
    MemoryApplied,
    MemoryDeadLetters,
    MemoryOutputs,
    MemoryStates,
)
from controller.adapters.unleash.client import UnleashAdmin
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Backend, Stage, UnleashTarget
from controller.core.rollouts.rollout import CommandInput
from controller.core.wire.messages import CommandAction
from controller.daemon.backends.sync import BackendSync, NudgingOutputs
from controller.daemon.rollouts.engine import Engine, build_engine
from controller.dev.unleash import UnleashServer, provide_postgres
from controller.process.logs import configure
from controller.settings import EngineSettings, LogSettings, TopicSettings, UnleashSettings
from tests.support.dripping import Dripper, upstream

TOPICS = TopicSettings()
POLL_S = 0.002


def plan(feature: str) -> Plan:
    return Plan(
        stages=[Stage(percent=p, min_duration=timedelta(hours=1)) for p in (5, 25, 100)],
        backend=Backend(unleash=UnleashTarget(feature=feature)),
    )


def command(flag: str, action: CommandAction, feature: str = "") -> CommandInput:
    return CommandInput(
        action=action,
        flag=flag,
        command_id=uuid.uuid4().hex,
        actor="bench",
        now=datetime.now(UTC),
        plan=plan(feature) if action is CommandAction.START else None,
        new_rollout_id=uuid.uuid4().hex,
        new_salt="s",
    )


class Admin:
    """Reads what Unleash's admin API shows, as a person or a dashboard would."""

    def __init__(self, server: UnleashServer) -> None:
        self._http = httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": server.admin_token}, timeout=5
        )
        self._env = server.environment

    async def serving(self, feature: str) -> tuple[bool, int | None]:
        answer = await self._http.get(f"/api/admin/projects/default/features/{feature}")
        if answer.status_code != httpx.codes.OK:
            return False, None
        envs = [e for e in answer.json()["environments"] if e["name"] == self._env]
        if not envs:  # a feature being created may not list its environments yet
            return False, None
        env = envs[0]
        rollouts = [int(s["parameters"]["rollout"]) for s in env["strategies"]]
        return env["enabled"], (rollouts[0] if rollouts else None)

    async def until(self, feature: str, want: tuple[bool, int | None] | bool) -> float:
        """Poll until the admin API shows ``want`` (``False``: environment off); when."""
        while True:
            enabled, percent = await self.serving(feature)
            if (want is False and not enabled) or want == (enabled, percent):
                return time.perf_counter()
            await asyncio.sleep(POLL_S)

    async def close(self) -> None:
        await self._http.aclose()


async def sdk_until(client: UnleashClient, feature: str, unit: str, served: bool) -> float:
    while client.is_enabled(feature, {"userId": unit}) != served:
        await asyncio.sleep(POLL_S)
    return time.perf_counter()


async def one_round(
    engine: Engine, admin: Admin, client: UnleashClient, proxy: Dripper, index: int
) -> dict[str, float]:
    feature, flag = f"bench-{uuid.uuid4().hex[:8]}", f"bench.flag{index}"
    await engine.rollouts.apply(flag, command(flag, CommandAction.START, feature))
    await admin.until(feature, (True, 5))
    unit = await treated_unit(client, feature)
    started = time.perf_counter()
    await admin.serving(feature)
    baseline = time.perf_counter() - started

    decided = time.perf_counter()
    await engine.rollouts.apply(flag, command(flag, CommandAction.PROMOTE))
    promote_admin = await admin.until(feature, (True, 25)) - decided

    decided = time.perf_counter()
    await engine.rollouts.apply(flag, command(flag, CommandAction.ROLLBACK))
    off_admin, off_sdk = await asyncio.gather(
        admin.until(feature, False), sdk_until(client, feature, unit, served=False)
    )
    return {
        "baseline_read_s": baseline,
        "promote_to_admin_s": promote_admin,
        "rollback_to_admin_s": off_admin - decided,
        "rollback_to_sdk_s": off_sdk - decided,
        "kill_beside_a_drip_s": await kill_beside_a_drip(engine, admin, proxy, index),
    }


async def kill_beside_a_drip(engine: Engine, admin: Admin, proxy: Dripper, index: int) -> float:
    """Decision → off for one flag's kill while another feature's read drips in."""
    slow, fast = f"bench-{uuid.uuid4().hex[:8]}", f"bench-{uuid.uuid4().hex[:8]}"
    slow_flag, fast_flag = f"bench.slow{index}", f"bench.kill{index}"
    await engine.rollouts.apply(slow_flag, command(slow_flag, CommandAction.START, slow))
    await engine.rollouts.apply(fast_flag, command(fast_flag, CommandAction.START, fast))
    await admin.until(slow, (True, 5))
    await admin.until(fast, (True, 5))
    proxy.slow = lambda method, path: method == "GET" and path.endswith(f"/features/{slow}")
    await engine.rollouts.apply(slow_flag, command(slow_flag, CommandAction.PROMOTE))
    while not proxy.dripping:
        await asyncio.sleep(POLL_S)
    decided = time.perf_counter()
    await engine.rollouts.apply(fast_flag, command(fast_flag, CommandAction.KILL))
    off = await admin.until(fast, False) - decided
    proxy.slow = lambda _method, _path: False  # its next try, after the deadline, answers
    return off


async def treated_unit(client: UnleashClient, feature: str) -> str:
    """A unit the SDK serves the feature to, once its refresh brought the feature."""
    while True:
        for i in range(1000):
            if client.is_enabled(feature, {"userId": f"user-{i}"}):
                return f"user-{i}"
        await asyncio.sleep(0.05)


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 4), "p95": round(p95, 4)}


async def run(rounds: int, refresh: int, workdir: Path) -> dict[str, Any]:
    postgres_url, stop_postgres, _ = provide_postgres()
    try:
        return await run_on(rounds, refresh, workdir, postgres_url)
    finally:
        stop_postgres()


async def run_on(rounds: int, refresh: int, workdir: Path, postgres_url: str) -> dict[str, Any]:
    server = UnleashServer(workdir, postgres_url=postgres_url).start()
    admin = Admin(server)
    client = UnleashClient(
        url=f"{server.url}/api",
        app_name="bench",
        environment=server.environment,
        custom_headers={"Authorization": server.client_token},
        refresh_interval=refresh,
        disable_metrics=True,
        disable_registration=True,
        cache_directory=str(workdir / "sdk"),
    )
    client.initialize_client()
    address = httpx.URL(server.url)
    proxy = Dripper(upstream(address.host, address.port or 80), every=2.0)
    settings = UnleashSettings(
        url=await proxy.start(),
        admin_token=SecretStr(server.admin_token),
        environment=server.environment,
        sync_interval_seconds=3600,  # only the decisions' nudges: what is measured
    )
    states, outputs = MemoryStates(), MemoryOutputs()
    try:
        async with UnleashAdmin(settings) as backend:
            sync = BackendSync(
                backend=backend,
                records=MemoryApplied(),
                states=states,
                settings=settings,
                topics=TOPICS,
                outputs=outputs,
            )
            nudging = NudgingOutputs(outputs, flag_state_topic=TOPICS.flag_state, nudge=sync.nudge)
            engine = build_engine(
                settings=EngineSettings(),
                topics=TOPICS,
                states=states,
                aggregates=MemoryAggregates(),
                outputs=nudging,
                dead_letters=MemoryDeadLetters(),
            )
            sync.attach(engine.rollouts.apply)
            task = asyncio.create_task(sync.run())
            results = [await one_round(engine, admin, client, proxy, i) for i in range(rounds)]
            sync.stop()
            await task
    finally:
        client.destroy()
        await admin.close()
        await proxy.close()
        server.drop()
    figures = {key: quantiles([r[key] for r in results]) for key in results[0]}
    base = figures["baseline_read_s"]["p95"] or 1e-9
    return {
        "bench": "unleash",
        "rounds": rounds,
        "sdk_refresh_s": refresh,
        **figures,
        "rollback_to_admin_p95_over_read": round(figures["rollback_to_admin_s"]["p95"] / base, 2),
        "rollback_to_admin_p95_under_1s": figures["rollback_to_admin_s"]["p95"] < 1.0,
        "kill_beside_a_drip_p95_over_rollback": round(
            figures["kill_beside_a_drip_s"]["p95"]
            / (figures["rollback_to_admin_s"]["p95"] or 1e-9),
            2,
        ),
        "kill_beside_a_drip_p95_under_1s": figures["kill_beside_a_drip_s"]["p95"] < 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--refresh", type=int, default=1, help="SDK refresh interval (s)")
    args = parser.parse_args()
    configure(LogSettings(level="warning", format="console"), stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-unleash-") as tmp:
        summary = asyncio.run(run(args.rounds, args.refresh, Path(tmp)))
    for key in (
        "baseline_read_s",
        "promote_to_admin_s",
        "rollback_to_admin_s",
        "rollback_to_sdk_s",
        "kill_beside_a_drip_s",
    ):
        f = summary[key]
        print(f"{key:24} p50 {f['p50'] * 1000:8.1f} ms   p95 {f['p95'] * 1000:8.1f} ms")
    print(
        f"rollback → admin API p95 is {summary['rollback_to_admin_p95_over_read']}x"
        " one admin API read"
    )
    print(
        f"kill beside a dripping read p95 is {summary['kill_beside_a_drip_p95_over_rollback']}x"
        " the plain rollback's"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
