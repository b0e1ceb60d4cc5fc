"""A controller with a signing key signs every decision it publishes, whatever its kind, and
an export of them checks whole; each way of tampering with the export fails at its own line.

On Apache Kafka and on the embedded broker, the daemon (its own signing key) decides
one of each kind the contract names (``Decision.kind``): a command (a start naming a
holdout), a transition (a scheduled start come due), the gate and the advisor
(a gating model that holds, then lets a stage advance), a monitor (a kill), a
segment, an app key, an ingest command and a pipeline. The kinds are read from the
contract, so a kind added there fails this test until it is decided here (or, where
only another service can make it, in the test named in :data:`SIGNED_ELSEWHERE`).
``rolloutctl audit export`` of the span, its seal signed by the operator's key,
passes ``rolloutctl audit check --config`` (the controller's key and the operator's
from the controller's own settings), and each copy tampered with fails at the line
the tampering is at.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import orjson
import pytest

from controller.core.rollouts.plan import Plan
from controller.core.trust import signing
from controller.core.trust.audit_chain import line_digest
from controller.core.wire import Decision, decision_key, sent_object
from controller.ctl.operate import commands_for, write_private_key
from controller.ctl.operate.app_keys import command_of as app_key_command
from controller.ctl.operate.ingest import command_of as ingest_command
from tests.scenarios.harness import KEY_ID, Scenario, fast_plan, manual_plan, topics_on
from tests.support.fake_model import FakeModel

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KINDS: frozenset[str] = frozenset(get_args(Decision.model_fields["kind"].annotation))
SIGNED_ELSEWHERE = {
    "backend": "tests/scenarios/unleash/test_unleash.py: a hand-made change in Unleash",
}
"""Kinds only another service makes, and the test that checks their signature there."""
CONTROLLER_KEY_ID = "ctl-audit"
ENVIRONMENTS = '{"names": ["dev", "production"], "default": "production"}'
PIPELINE = {
    "name": "release",
    "plans": {
        "by-hand": {
            "stages": [
                {"percent": 50, "min_duration": "10m", "min_units_per_arm": 0},
                {"percent": 100, "min_duration": "0s", "min_units_per_arm": 0},
            ],
            "guardrails": [{"metric": "error_rate"}],
        }
    },
    "plan": "by-hand",
    "steps": [{"environment": "dev"}, {"environment": "production"}],
}
DECISION = "dev.rollout-controller.decision"
RUN_TIMEOUT_S = 120.0


@pytest.fixture(params=["apache_kafka_bootstrap", "tansu_bootstrap"])
async def world(
    request: pytest.FixtureRequest, redis_url: str, redis_namespace: str, tmp_path: Path
) -> AsyncIterator[Scenario]:
    """Apache Kafka, then the embedded broker (the demo's and ``dev up``'s)."""
    bootstrap = str(request.getfixturevalue(request.param))
    async with Scenario(
        bootstrap=bootstrap,
        redis_url=redis_url,
        prefix=redis_namespace,
        topics=await topics_on(bootstrap, "signed"),
        workdir=tmp_path,
    ) as scenario:
        yield scenario


@pytest.fixture
async def model() -> AsyncIterator[FakeModel]:
    async with FakeModel() as fake:
        yield fake


class Operator:
    """Sends the scenario's signed commands of each kind and waits for their decisions."""

    def __init__(self, world: Scenario) -> None:
        self.world = world

    async def applied(self, command: dict[str, Any], *, flag: str, what: str) -> dict[str, Any]:
        decided = await self.world.decided(command, flag=flag, what=what)
        assert decided["outcome"] == "applied", decided
        return decided

    async def segment(self) -> dict[str, Any]:
        (unsigned,) = commands_for(
            "beta", action="put", actor="tester", key_id=KEY_ID, rule='country in ["de"]'
        )
        command = sent_object(signing.sign_command(unsigned, self.world.key))
        return await self.applied(command, flag=decision_key("beta"), what="the segment put")

    async def app_key(self) -> dict[str, Any]:
        unsigned = app_key_command(
            "create", "web", actor="tester", key_id=KEY_ID, secret="s" * 32, scopes=["evaluate"]
        )
        command = sent_object(signing.sign_command(unsigned, self.world.key))
        return await self.applied(command, flag="app-keys", what="the app key's creation")

    async def ingest(self) -> dict[str, Any]:
        unsigned = ingest_command("reread", partitions=[0], actor="tester", key_id=KEY_ID)
        command = sent_object(signing.sign_command(unsigned, self.world.key))
        # no partition is held: the choice is refused, and the refusal decided and audited
        return await self.world.decided(command, flag="ingest", what="the ingest choice")

    async def pipeline(self) -> dict[str, Any]:
        command = self.world.pipeline_command("piped", PIPELINE)
        return await self.applied(command, flag="piped", what="the pipeline's start")

    async def holdout(self) -> dict[str, Any]:
        holdout = {"name": "q4", "percent": 2.0}
        plan = Plan.model_validate({**manual_plan().model_dump(), "holdout": holdout})
        command = self.world.command("start", "held", plan=plan)
        return await self.applied(command, flag="held", what="the start naming a holdout")

    async def scheduled(self) -> dict[str, Any]:
        at = datetime.now(UTC) + timedelta(seconds=2)
        command = self.world.command("start", "later", plan=manual_plan(), at=at)
        await self.applied(command, flag="later", what="the scheduled start")
        return await self.kind("transition", "later", what="the scheduled start come due")

    async def monitored(self) -> dict[str, Any]:
        command = self.world.command("start", "doomed", plan=manual_plan())
        await self.applied(command, flag="doomed", what="the monitored flag's start")
        await self.world.monitor("db", "down", "incident-1")
        return await self.kind("monitor", "doomed", what="the kill on the monitor's alert")

    async def kind(self, kind: str, flag: str, *, what: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.world.until(
            lambda: self.world.observed.decision_where(flag=flag, kind=kind),
            timeout=60,
            what=what,
        )
        return found


def _config(world: Scenario, path: Path, controller_key: Path) -> Path:
    """The controller's settings as the operator keeps them: brokers, topics, the operator's
    public key and the controller's signing key."""
    public = signing.public_key_text(world.key.public_key())
    settings = {
        "kafka": {"bootstrap_servers": world.bootstrap},
        "topics": world.topics,
        "engine": {"operator_keys": {KEY_ID: public}},
        "signing": {"key_file": str(controller_key), "key_id": CONTROLLER_KEY_ID},
    }
    path.write_text(json.dumps(settings), encoding="utf-8")  # YAML reads JSON
    return path


def _rolloutctl(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "controller.ctl.app", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )


def _checked(path: Path, config: Path) -> tuple[int, str]:
    """``rolloutctl audit check FILE --config``: the exit and what it said, the file's name
    left out."""
    done = _rolloutctl("audit", "check", str(path), "--config", str(config))
    return done.returncode, (done.stdout + done.stderr).strip().removeprefix(f"{path}: ")


def _written(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _rechained(lines: list[bytes], edit: int) -> list[bytes]:
    """``lines`` with line ``edit``'s decision told otherwise, the chain after it written again
    and the seal's head and prevdigest with it, its signature dropped: all anyone without
    the operator's key can do."""
    *events, sealed = [orjson.loads(line) for line in lines]
    events[edit - 1]["data"]["reason"] = "never rolled back"
    written: list[bytes] = []
    head = events[0]["prevdigest"]
    for event in events:
        line = orjson.dumps({**event, "prevdigest": head})
        written.append(line)
        head = line_digest(line)
    data = {k: v for k, v in sealed["data"].items() if k not in ("sig", "key_id")}
    seal = {**sealed, "id": f"seal-{head}", "prevdigest": head, "data": {**data, "head": head}}
    return [*written, orjson.dumps(seal)]


@pytest.mark.timeout(420)
async def test_every_kind_of_decision_is_signed_and_each_tampering_fails_at_its_line(
    world: Scenario, model: FakeModel, tmp_path: Path
) -> None:
    assert set(SIGNED_ELSEWHERE) < KINDS
    since = datetime.now(UTC) - timedelta(seconds=1)
    # Given a daemon with a signing key, environments for a pipeline, a monitor of one
    # flag and a gating advisor that holds every stage until told otherwise
    controller_key = tmp_path / "keys" / f"{CONTROLLER_KEY_ID}.key"
    write_private_key(controller_key, signing.generate_key()[0])
    model.behaviour = "hold"
    world.configure(
        RC_SIGNING__KEY_FILE=str(controller_key),
        RC_SIGNING__KEY_ID=CONTROLLER_KEY_ID,
        RC_ENGINE__ENVIRONMENTS=ENVIRONMENTS,
        RC_LLM__MODE="gating",
        LLM_BASE_URL=model.base_url,
        RC_LLM__TIMEOUT_SECONDS="2",
        RC_LLM__HOLD_SECONDS="1",
    )
    world.map_monitor("db", ["doomed"])
    world.start_daemon()
    operator = Operator(world)
    # When the operator and the world make it decide each kind
    world.run_apps("moving")
    await world.start("moving", fast_plan())
    decided = {
        "segment": await operator.segment(),
        "app_key": await operator.app_key(),
        "ingest": await operator.ingest(),
        "pipeline": await operator.pipeline(),
        "command": await operator.holdout(),
        "transition": await operator.scheduled(),
        "monitor": await operator.monitored(),
        "advisor": await operator.kind("advisor", "moving", what="the advisor's hold"),
    }
    model.behaviour = "advance"
    decided["gate"] = await world.until(
        lambda: world.observed.decision_where(flag="moving", kind="gate", action="advance"),
        timeout=90,
        what="the gate's advance once the model lets it",
    )
    await world.stop_apps()
    until = datetime.now(UTC)
    # ...and the span is exported, the seal signed with the operator's key
    operator_key = tmp_path / "keys" / f"{KEY_ID}.key"
    write_private_key(operator_key, world.key)
    config = _config(world, tmp_path / "controller.yaml", controller_key)
    out = tmp_path / "audit.jsonl"
    exported = await asyncio.to_thread(
        _rolloutctl,
        *("audit", "export", "--config", str(config), "--out", str(out)),
        *("--since", since.isoformat(), "--until", until.isoformat()),
        *("--key-id", KEY_ID, "--key", str(operator_key)),
    )
    assert exported.returncode == 0, exported.stderr
    # Then every kind the contract names was decided here or is signed where it is made
    assert {name: d["kind"] for name, d in decided.items()} == {name: name for name in decided}
    assert set(decided) | set(SIGNED_ELSEWHERE) == KINDS
    lines = out.read_bytes().splitlines()
    events = [orjson.loads(line) for line in lines[:-1]]
    decisions = [e["data"] for e in events if e["type"] == DECISION]
    assert {d["kind"] for d in decisions} | set(SIGNED_ELSEWHERE) == KINDS
    assert {d["key_id"] for d in decisions} == {CONTROLLER_KEY_ID}
    # ...and the export checks whole: chained, counted, its seal and each decision signed
    code, said = await asyncio.to_thread(_checked, out, config)
    assert (code, said) == (
        0,
        f"{len(events):,} events, chained, counted and signed by {KEY_ID}; "
        f"{len(decisions):,} decisions, each signed by the controller ({CONTROLLER_KEY_ID})",
    )
    # ...and each tampering fails at its own line: the segment's decision edited, dropped,
    # swapped with the line after it; the seal cut off, or unsigned; and an edit the chain
    # and the seal were written again around
    at = 1 + next(n for n, e in enumerate(events) if e["data"].get("kind") == "segment")
    edited = lines[at - 1].replace(b'"outcome":"applied"', b'"outcome":"applieD"')
    assert edited != lines[at - 1]
    unsigned = orjson.loads(lines[-1])
    unsigned["data"] = {k: v for k, v in unsigned["data"].items() if k not in ("sig", "key_id")}
    tampered = {
        "edited": ([*lines[: at - 1], edited, *lines[at:]], at, "edited:"),
        "dropped": ([*lines[: at - 1], *lines[at:]], at, "a line is missing between"),
        "swapped": (
            [*lines[: at - 1], lines[at], lines[at - 1], *lines[at + 1 :]],
            at,
            "out of order: line",
        ),
        "cut": (lines[:-1], len(lines) - 1, "the last line is no seal"),
        "unsigned seal": ([*lines[:-1], orjson.dumps(unsigned)], len(lines), "is unsigned"),
        "rewritten": (
            _rechained(lines, at),
            at,
            "the decision is not as the controller signed it: bad_signature",
        ),
    }
    for name, (changed, line, reason) in tampered.items():
        code, said = await asyncio.to_thread(
            _checked, _written(tmp_path / f"{name}.jsonl", changed), config
        )
        assert (code, said.split(": ", 1)[0]) == (1, f"line {line}"), (name, said)
        assert reason in said, (name, said)
