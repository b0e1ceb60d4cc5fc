"""``rolloutctl restore`` on Apache Kafka and the embedded broker with the daemon: a flag
and the segment its plan names brought back to the state after an earlier decision.

A rollout targeted at a rule segment is promoted to its second stage; the segment is
widened and the rollout promoted again. Restoring to the first promote's decision puts
the segment's rule back as it was and serves the second stage again (the rollout,
ahead of it, is aborted, its plan started again and promoted to that stage: status
numbers its stages as before), each
step signed and sent like any command. A dry run sends nothing; a decision that is
not there is refused with the reason. On an empty store (Redis lost, the commands on
the topic stale) the controller rebuilds the rollout at its last decision by itself,
numbering its flag versions above the lost rollout's, and a restore to that decision puts
back the segment its plan names, which it does not rebuild.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.core.rollouts import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.trust import signing
from controller.core.wire import decision_key, sent_object
from controller.ctl.operate import commands_for, orjson_rule, write_private_key
from tests.integration.http.test_http import wait_status
from tests.scenarios.harness import KEY_ID, Scenario, topics_on
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FLAG = "checkout"
SEGMENT = "beta"
STALE_AFTER_S = 3
"""The empty store's daemon refuses commands older than this (``command_max_age_seconds``)."""
CTL_TIMEOUT_S = 180.0
"""A Python process reading two topics and waiting for four decisions on a busy machine."""


@pytest.fixture(params=["apache_kafka_bootstrap", "tansu_bootstrap"])
async def world(
    request: pytest.FixtureRequest, redis_url: str, redis_namespace: str, tmp_path: Path
) -> AsyncIterator[Scenario]:
    """The daemon on Apache Kafka, then on the embedded broker (the demo's, no time index)."""
    bootstrap = str(request.getfixturevalue(request.param))
    async with Scenario(
        bootstrap=bootstrap,
        redis_url=redis_url,
        prefix=redis_namespace,
        topics=await topics_on(bootstrap, "restore", events=2),
        workdir=tmp_path,
    ) as scenario:
        yield scenario


def _plan() -> Plan:
    """Stages that only commands move, served to the segment's audience."""
    return Plan.model_validate(
        {
            "name": "by-hand",
            "audience": f'country in segment("{SEGMENT}")',
            "stages": [
                Stage(percent=p, min_duration=timedelta(minutes=10), min_units_per_arm=0)
                for p in (1, 5, 25, 100)
            ],
            "guardrails": [Guardrail(metric="error_rate")],
        }
    )


async def _put_segment(world: Scenario, rule: str) -> dict[str, Any]:
    (unsigned,) = commands_for(SEGMENT, action="put", actor="tester", key_id=KEY_ID, rule=rule)
    command = sent_object(signing.sign_command(unsigned, world.key))
    decided = await world.decided(command, flag=decision_key(SEGMENT), what=f"segment {rule}")
    assert decided["outcome"] == "applied", decided
    return decided


def _serving(world: Scenario) -> str:
    """Start the daemon with its HTTP API on a free port; its URL."""
    port = free_port()
    world.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
    world.start_daemon()
    return f"http://127.0.0.1:{port}"


async def _started(world: Scenario, rule: str) -> dict[str, Any]:
    """The segment put with ``rule``, then a rollout of :func:`_plan` started: its decision."""
    await _put_segment(world, rule)
    started = await world.decided(
        world.command("start", FLAG, plan=_plan()), flag=FLAG, what="start"
    )
    assert started["outcome"] == "applied", started
    return started


async def _promote(world: Scenario, stage: int) -> dict[str, Any]:
    decided = await world.decided(world.command("promote", FLAG), flag=FLAG, what="a promote")
    assert (decided["outcome"], decided["stage"]) == ("applied", stage), decided
    return decided


def _restore(
    world: Scenario, tmp_path: Path, url: str, decision_id: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    return _rolloutctl_restore(world, tmp_path, url, FLAG, "--to-decision", decision_id, *flags)


def _rolloutctl_restore(
    world: Scenario, tmp_path: Path, url: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "settings.yaml"
    lines = ["kafka:", f"  bootstrap_servers: {world.bootstrap}", "topics:"]
    lines += [f"  {key}: {name}" for key, name in world.topics.items()]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    key = tmp_path / f"{KEY_ID}.key"
    if not key.exists():
        write_private_key(key, world.key)
    command = [sys.executable, "-m", "controller.ctl.app", "restore"]
    command += ["--config", str(config), "--url", url]
    command += ["--key-id", KEY_ID, "--key", str(key), "--actor", "tester", "--timeout", "60"]
    return subprocess.run(
        [*command, *flags], capture_output=True, text=True, timeout=CTL_TIMEOUT_S, check=False
    )


async def _segment_rule(url: str) -> object:
    body = (await wait_status(f"{url}/v1/segments/{SEGMENT}", 200)).json()
    return body.get("rule")


async def test_a_restore_brings_back_the_stage_and_the_segment_of_an_earlier_decision(
    world: Scenario, tmp_path: Path
) -> None:
    url = _serving(world)
    # Given a rollout at its second stage (5%) targeted at a segment of German users
    narrow, wide = 'country in ["de"]', 'country in ["de", "fr"]'
    started = await _started(world, narrow)
    earlier = await _promote(world, 1)
    # ...then the segment widened and the rollout promoted to 25%
    await _put_segment(world, wide)
    await _promote(world, 2)
    assert await _segment_rule(url) == orjson_rule(wide)
    # When a restore to the first promote is asked for without --yes
    dry = await asyncio.to_thread(_restore, world, tmp_path, url, earlier["id"], "--dry-run")
    # Then it proposes the segment's rule back, the rollout aborted, started and promoted
    # to its second stage, stages named from 1 as status names them
    assert dry.returncode == 0, dry.stderr
    assert "segment put" in dry.stdout
    assert "running at stage 3 → aborted" in dry.stdout, dry.stdout
    assert "the new rollout: stage 1 → stage 2 (5%)" in dry.stdout, dry.stdout
    assert "nothing sent" in dry.stderr
    rollout = await world.rollout(FLAG)
    assert rollout is not None
    assert (rollout.rollout_id, rollout.stage) == (started["rollout_id"], 2)
    # When it is sent
    done = await asyncio.to_thread(_restore, world, tmp_path, url, earlier["id"], "--yes")
    # Then the segment is as it was and the flag serves 5% of it again
    assert done.returncode == 0, done.stdout + done.stderr
    assert await _segment_rule(url) == orjson_rule(narrow)
    rollout = await world.rollout(FLAG)
    assert rollout is not None
    assert rollout.rollout_id != started["rollout_id"]
    assert rollout.phase.value == "running"
    assert (rollout.stage, rollout.plan.stages[rollout.stage].percent) == (1, 5)
    assert rollout.plan.audience == _plan().audience
    assert len(rollout.plan.stages) == len(_plan().stages)
    # ...each step decided as a command signed by the operator's key
    restored = [d for d in world.observed.decisions if d.get("evidence", {}).get("key_id")]
    assert {"abort", "start", "promote"} <= {d["action"] for d in restored if d["flag"] == FLAG}
    # ...and a restore to a decision that is not there is refused, naming it
    missing = await asyncio.to_thread(_restore, world, tmp_path, url, "no-such-decision", "--yes")
    assert missing.returncode == 1
    assert "no-such-decision" in missing.stderr
    assert "is not on" in missing.stderr
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{url}/rollouts/{FLAG}")).json()["rollout_id"] == (
            rollout.rollout_id
        )


async def test_a_restore_of_the_same_rollout_resumes_it_against_its_stage(
    world: Scenario, tmp_path: Path
) -> None:
    url = _serving(world)
    # Given a rollout promoted to its second stage, then paused
    started = await _started(world, 'country in ["de"]')
    earlier = await _promote(world, 1)
    paused = await world.decided(world.command("pause", FLAG), flag=FLAG, what="a pause")
    assert paused["phase_after"] == "paused", paused
    # When it is restored to the promote's decision
    done = await asyncio.to_thread(_restore, world, tmp_path, url, earlier["id"], "--yes")
    # Then the same rollout runs again at that stage, nothing else sent
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resume" in done.stdout
    assert "abort" not in done.stdout
    assert "segment" not in done.stdout  # the segment is as it was
    rollout = await world.rollout(FLAG)
    assert rollout is not None
    assert (rollout.rollout_id, rollout.stage) == (started["rollout_id"], 1)
    assert rollout.phase.value == "running"
    # ...and restoring again finds it so and sends nothing
    again = await asyncio.to_thread(_restore, world, tmp_path, url, earlier["id"], "--yes")
    assert again.returncode == 0, again.stderr
    assert "already so" in again.stdout


async def test_an_empty_store_is_rebuilt_and_a_restore_puts_back_its_segment(
    world: Scenario, tmp_path: Path
) -> None:
    url = _serving(world)
    # Given a rollout promoted to its third stage, the segment its plan names put first
    await _started(world, 'country in ["de"]')
    await _promote(world, 1)
    last = await _promote(world, 2)
    lost = await world.rollout(FLAG)
    assert lost is not None
    # When Redis is lost and the daemon starts on an empty store once the commands it
    # would read again are stale (as they are hours later)
    world.daemon.kill()
    world.prefix = f"{world.prefix}-empty"
    world.configure(RC_ENGINE__COMMAND_MAX_AGE_SECONDS=str(STALE_AFTER_S))
    await asyncio.sleep(STALE_AFTER_S + 0.5)  # the commands' age, not a wait for an outcome
    world.start_daemon()
    await world.until(
        lambda: world.observed.decision_where(command_id=last["command_id"], outcome="rejected"),
        timeout=60,
        what="the last promote read again and refused as stale",
    )
    # Then the controller rebuilds the rollout by itself, at its last decision
    await world.until(
        lambda: world.rollout(FLAG), timeout=60, what="the rollout rebuilt from the topics"
    )
    # ...a restore of every flag to its last decision proposes what it does not rebuild,
    # the segment, and sends nothing with --dry-run
    every = await asyncio.to_thread(
        _rolloutctl_restore, world, tmp_path, url, "--all-flags", "--dry-run"
    )
    assert every.returncode == 0, every.stdout + every.stderr
    # (its last decision is the rebuild's, which left it where the lost one had)
    assert f"restore {FLAG} to decision " in every.stdout
    assert "(running at stage 3):" in every.stdout
    assert "segment put" in every.stdout
    assert "start" not in every.stdout
    assert "nothing sent" in every.stderr
    # ...and a restore to that decision puts it back
    done = await asyncio.to_thread(_restore, world, tmp_path, url, last["id"], "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "segment put" in done.stdout
    assert "abort" not in done.stdout
    assert "start" not in done.stdout
    rollout = await world.rollout(FLAG)
    assert rollout is not None
    assert (rollout.rollout_id, rollout.phase.value, rollout.stage) == (
        lost.rollout_id,
        "running",
        2,
    )
    assert rollout.plan.stages == _plan().stages
    assert rollout.plan.audience == _plan().audience
    assert await _segment_rule(url) == orjson_rule('country in ["de"]')
    # ...under versions above every one the lost rollout published: its stages count no
    # event of the lost rollout's split
    assert min(rollout.stage_flag_versions() | {rollout.flag_version}) > lost.flag_version
    assert min(v for vs in rollout.stage_versions.values() for v in vs) > lost.flag_version
