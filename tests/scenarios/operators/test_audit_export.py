"""The audit export across a kill -9 of the daemon mid-rollout, on Apache Kafka.

The daemon runs a rollout; it is killed (SIGKILL) after the first advance and
started again, and gates the rollout to the end, republishing what its outbox
held. ``rolloutctl audit export`` of the span, taken once across the kill (the
export runs as the daemon dies) and once after the end, holds every decision
the topic carries exactly once, as published, in order, and validates against
the published schema; the first export's events are in the second unchanged. The
daemon has a signing key, and every exported decision is as it signed it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from controller.core.trust.audit_check import Checked, check_export
from controller.core.trust.signing import StateVerifier, generate_key, private_key_text
from tests.scenarios.harness import Scenario, fast_plan, topics_on

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FLAG = "checkout"
SCHEMA = Path(__file__).resolve().parents[3] / "schemas" / "audit-event.schema.json"
EXPORT_TIMEOUT_S = 120.0
DECISION = "dev.rollout-controller.decision"


@pytest.fixture
async def world(
    apache_kafka_bootstrap: str, redis_url: str, redis_namespace: str, tmp_path: Path
) -> AsyncIterator[Scenario]:
    topics = await topics_on(apache_kafka_bootstrap, "audit")
    async with Scenario(
        bootstrap=apache_kafka_bootstrap,
        redis_url=redis_url,
        prefix=redis_namespace,
        topics=topics,
        workdir=tmp_path,
    ) as scenario:
        yield scenario


def _start_export(
    world: Scenario, out: Path, since: datetime, until: datetime
) -> subprocess.Popen[str]:
    config = out.with_suffix(".yaml")
    lines = ["kafka:", f"  bootstrap_servers: {world.bootstrap}", "topics:"]
    lines += [f"  {key}: {name}" for key, name in world.topics.items()]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "controller.ctl.app", "audit", "export"]
    command += ["--config", str(config), "--out", str(out), "--types", "decision,command,alert"]
    command += ["--since", since.isoformat(), "--until", until.isoformat()]
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True)


def _exported(export: subprocess.Popen[str], out: Path) -> list[dict[str, Any]]:
    _, stderr = export.communicate(timeout=EXPORT_TIMEOUT_S)
    assert export.returncode == 0, stderr
    lines = out.read_bytes().splitlines()
    # the file is whole: its chain holds from the start to the seal, its last line
    assert isinstance(check_export(lines, {}), Checked)
    return [json.loads(line) for line in lines[:-1]]


def _export(world: Scenario, out: Path, since: datetime, until: datetime) -> list[dict[str, Any]]:
    return _exported(_start_export(world, out, since, until), out)


def _check(events: list[dict[str, Any]]) -> None:
    validator = Draft202012Validator(
        json.loads(SCHEMA.read_text(encoding="utf-8")),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    for event in events:
        validator.validate(event)
    order = [(e["time"], e["kafkatopic"], e["kafkapartition"], e["kafkaoffset"]) for e in events]
    assert order == sorted(order)
    ids = Counter((e["source"], e["id"]) for e in events)
    assert [key for key, n in ids.items() if n > 1] == []


async def test_an_export_across_a_kill_holds_every_decision_exactly_once(
    world: Scenario, tmp_path: Path
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    # Given a rollout running, with apps sending events, on a daemon with a signing key
    key, public = generate_key()
    world.configure(RC_SIGNING__KEY=private_key_text(key), RC_SIGNING__KEY_ID="ctl-audit")
    world.start_daemon()
    world.run_apps(FLAG)
    await world.start(FLAG, fast_plan())
    await world.until(
        lambda: world.observed.decision_where(flag=FLAG, action="advance", stage=1),
        timeout=60,
        what="the first advance",
    )
    # When the daemon is killed mid-rollout while an export runs, and started again
    first = tmp_path / "during.jsonl"
    export = _start_export(world, first, since, datetime.now(UTC))
    world.daemon.kill()
    during = await asyncio.to_thread(_exported, export, first)
    world.start_daemon()
    await world.until(
        lambda: world.observed.decision_where(flag=FLAG, action="complete"),
        timeout=150,
        what="the rollout to complete after the restart",
    )
    await world.stop_apps()
    until = datetime.now(UTC)
    marker = await world.decided(
        world.command("pause", FLAG), flag=FLAG, what="a last decision, after the span"
    )
    after = await asyncio.to_thread(_export, world, tmp_path / "after.jsonl", since, until)
    # Then each export validates, is in order and names no record twice
    _check(during)
    _check(after)
    # ...the one after the end holds every decision on the topic once, as published
    published = {d["id"]: d for d in world.observed.decisions}
    exported = {e["id"]: e["data"] for e in after if e["type"] == DECISION}
    assert marker["id"] not in exported
    del published[marker["id"]]
    assert exported == published
    assert len([e for e in after if e["type"] == DECISION]) == len(published)
    advances = sorted(d["stage"] for d in exported.values() if d["action"] == "advance")
    assert advances == [1, 2, 3, 4]
    assert [d["action"] for d in exported.values()].count("complete") == 1
    # ...each decision signed by the controller, those republished after the kill too
    lines = (tmp_path / "after.jsonl").read_bytes().splitlines()
    checked = check_export(lines, {}, controller=StateVerifier({"ctl-audit": public}))
    assert isinstance(checked, Checked), checked
    assert (checked.decisions, checked.decision_keys) == (len(exported), ("ctl-audit",))
    assert {d["key_id"] for d in exported.values()} == {"ctl-audit"}

    # ...and what was exported across the kill is in it unchanged (but for the chain,
    # which is each export's own: its start names its span)
    def unchained(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**e, "prevdigest": None} for e in events if e["type"] == DECISION]

    assert unchained(during) == unchained(after)[: len(unchained(during))]
