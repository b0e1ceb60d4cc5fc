"""``rolloutctl mcp`` against the real daemon, broker and Redis, driven by the MCP SDK's client.

The agent reads and proposes; nothing it calls changes a rollout. A proposal a person
signs and sends with the real ``rolloutctl`` applies; one made before the flag changed
is refused as stale, with the reason, and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from controller.core.rollouts.rollout import Phase, Rollout
from controller.ctl.agent import tools
from controller.ctl.agent.reading import Reader
from controller.ctl.exits import EXIT_REJECTED
from controller.ctl.operate.commands import write_private_key
from controller.dev.processes import free_port
from controller.settings import KafkaSettings, TopicSettings
from tests.scenarios.harness import KEY_ID, Scenario, fast_plan, manual_plan
from tests.support.waiting import eventually

TOKEN = "mcp-test-read-token"
FLAG = "checkout"
READS = {
    "list_rollouts",
    "rollout_status",
    "latest_decision",
    "why_holding",
    "rollout_report",
    "pipeline_status",
    "recent_alerts",
    "draft_rule",
    "draft_rings",
}
PROPOSALS = {"propose_pause", "propose_kill", "propose_promote", "propose_start"}
ROLLOUTCTL = Path(sys.executable).with_name("rolloutctl")


@pytest.fixture
def reading_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUTCTL_TOKEN", TOKEN)


async def running_world(scenario: Scenario) -> str:
    """The daemon with its read API behind a token, and ``checkout`` running by hand."""
    port = free_port()
    scenario.configure(
        RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1", RC_HTTP__WEBHOOK_TOKEN=TOKEN
    )
    scenario.start_daemon()
    scenario.run_apps(FLAG, rate=300)
    await scenario.start(FLAG, manual_plan())
    await scenario.until(
        lambda: scenario.observed.decision_where(flag=FLAG, action="start"),
        timeout=30,
        what="the start",
    )
    return f"http://127.0.0.1:{port}"


def reader_for(scenario: Scenario, base: str) -> Reader:
    topics = TopicSettings(decisions=scenario.topics["decisions"], alerts=scenario.topics["alerts"])
    return Reader(base, KafkaSettings(bootstrap_servers=scenario.bootstrap), topics, timeout_s=30)


def fingerprint(rollout: Rollout | None) -> tuple[Any, ...]:
    assert rollout is not None
    return (rollout.rollout_id, rollout.flag_version, rollout.phase, rollout.stage)


def result(answer: Any) -> dict[str, Any]:
    assert not answer.is_error, answer.content
    found: dict[str, Any] = answer.structured_content
    return found


async def test_tools_read_propose_and_change_nothing_until_a_person_signs(
    scenario: Scenario, tmp_path: Path, reading_token: None
) -> None:
    base = await running_world(scenario)
    server = tools.build(reader_for(scenario, base))
    async with Client(server) as client:
        # The tools, and what they say of themselves
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(listed) == READS | PROPOSALS
        for name in READS:
            read = listed[name].annotations
            assert read is not None
            assert read.read_only_hint is True, name
        for name in PROPOSALS:
            hints = listed[name].annotations
            assert hints is not None
            assert hints.read_only_hint is False, name
            assert "only proposes" in (listed[name].description or ""), name
        assert {n for n in PROPOSALS if listed[n].annotations.destructive_hint} == {  # type: ignore[union-attr]
            "propose_pause",
            "propose_kill",
        }

        # Every tool called: reads answer, proposals come back unsigned
        before = fingerprint(await scenario.rollout(FLAG))
        published = await scenario.until(
            lambda: scenario.state(FLAG), timeout=30, what="the flag's state"
        )
        status = result(await client.call_tool("rollout_status", {"flag": FLAG}))
        assert (status["rollout_id"], status["flag_version"]) == before[:2]
        listing = result(await client.call_tool("list_rollouts", {}))
        assert [r["flag"] for r in listing["rollouts"]] == [FLAG]
        latest = result(await client.call_tool("latest_decision", {"flag": FLAG}))
        assert latest["decision"]["action"] == "start"
        hold = result(await client.call_tool("why_holding", {"flag": FLAG}))
        assert hold["moving"] is False, hold
        assert hold["reasons"], hold
        report = await client.call_tool("rollout_report", {"flag": FLAG})
        assert not report.is_error
        assert FLAG in str(report.content)
        missing = await client.call_tool("pipeline_status", {"flag": FLAG})
        assert missing.is_error
        assert "no pipeline run" in str(missing.content)
        alerts = result(await client.call_tool("recent_alerts", {"limit": 5}))
        assert alerts["complete"] is True
        rule = result(await client.call_tool("draft_rule", {"rule": 'country in ["DE", "FR"]'}))
        assert rule["usable"] is True
        rings = [{"audience": "everyone", "percent": 5}, {"audience": "everyone", "percent": 100}]
        drafted = result(await client.call_tool("draft_rings", {"rings": rings}))
        plan_text = yaml.safe_dump(fast_plan().model_dump(mode="json"))
        proposals = {
            "pause": result(
                await client.call_tool("propose_pause", {"flag": FLAG, "reason": "p99"})
            ),
            "kill": result(await client.call_tool("propose_kill", {"flag": FLAG, "reason": "bad"})),
            "promote": result(
                await client.call_tool("propose_promote", {"flag": FLAG, "reason": "ok"})
            ),
            "start": result(
                await client.call_tool(
                    "propose_start", {"flag": "other", "plan_yaml": plan_text, "reason": "go"}
                )
            ),
        }
        assert "stages" in drafted["plan_yaml"]
        bad = await client.call_tool("rollout_status", {"flag": "../etc"})
        assert bad.is_error
        assert "flag" in str(bad.content)
    for proposal in proposals.values():
        assert "sig" not in proposal["command"]
        assert "key_id" not in proposal["command"]
    assert proposals["pause"]["command"]["expect_version"] == before[1]
    assert proposals["pause"]["command"]["expect_rollout_id"] == before[0]
    assert proposals["start"]["command"]["expect_version"] == 0

    # A marker decided after every call above: had any of them sent a command, its
    # decision would be on the topic before this one's (one flag, one partition).
    marker = scenario.command("resume", FLAG)
    decided = await scenario.decided(marker, flag=FLAG, what="the marker command")
    assert decided["outcome"] == "rejected"
    ours = [d for d in scenario.observed.decisions if d.get("command_id")]
    assert [d["action"] for d in ours] == ["start", "resume"]
    assert fingerprint(await scenario.rollout(FLAG)) == before
    assert await scenario.rollout("other") is None
    assert scenario.state(FLAG) == published  # no flag state published since
    assert scenario.state("other") is None

    # A person signs and sends the pause: it applies
    key = tmp_path / "ops.key"
    write_private_key(key, scenario.key)
    paused = await sign_and_send(scenario, key, tmp_path, proposals["pause"])
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.startswith("applied: pause checkout -> paused")
    after = await scenario.rollout(FLAG)
    assert after is not None
    assert after.phase is Phase.PAUSED
    # The kill was made before the pause changed the flag: refused as stale, nothing changes
    stale = await sign_and_send(scenario, key, tmp_path, proposals["kill"])
    assert stale.returncode == EXIT_REJECTED, stale.stderr
    assert f"flag version {before[1]}, the flag is at {after.flag_version}" in stale.stdout
    assert fingerprint(await scenario.rollout(FLAG)) == fingerprint(after)


async def sign_and_send(
    scenario: Scenario, key: Path, folder: Path, proposal: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    """The line the proposal names, run as on-call runs it (with the test's key and broker)."""
    (folder / proposal["file"]).write_text(json.dumps(proposal["command"]))
    line = proposal["sign_and_send"].split()
    assert line[:5] == ["rolloutctl", "send", "--sign", "--wait", "--file"]
    own = ["--key", str(key), "--key-id", KEY_ID, "--actor", "on-call"]
    broker = ["--bootstrap", scenario.bootstrap, "--topic", scenario.topics["commands"]]
    return await asyncio.to_thread(
        subprocess.run,
        [str(ROLLOUTCTL), *line[1:], *own, *broker],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=folder,
        env={**os.environ, "RC_TOPICS__DECISIONS": scenario.topics["decisions"]},
    )


async def test_the_server_answers_over_stdio_and_streamable_http(
    scenario: Scenario, reading_token: None
) -> None:
    base = await running_world(scenario)
    env = {k: v for k, v in os.environ.items() if k != "ROLLOUTCTL_KEY"}
    env |= {
        "ROLLOUTCTL_URL": base,
        "ROLLOUTCTL_TOKEN": TOKEN,
        "RC_TOPICS__DECISIONS": scenario.topics["decisions"],
        "RC_TOPICS__ALERTS": scenario.topics["alerts"],
    }
    served = ["mcp", "--bootstrap", scenario.bootstrap]
    # Over stdio, as an MCP client starts it
    stdio = StdioServerParameters(command=str(ROLLOUTCTL), args=served, env=env)
    async with Client(stdio) as client:
        status = result(await client.call_tool("rollout_status", {"flag": FLAG}))
        latest = result(await client.call_tool("latest_decision", {"flag": FLAG}))
    assert status["phase"] == "running"
    assert latest["decision"]["action"] == "start"
    # Over streamable HTTP
    port = free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 - stopped below, in this test
        [str(ROLLOUTCTL), *served, "--http", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        listing = await eventually(lambda: _listed(url), timeout=60, what="the HTTP server")
        assert [r["flag"] for r in listing["rollouts"]] == [FLAG]
    finally:
        process.terminate()
        _, err = await asyncio.to_thread(process.communicate, timeout=30)
    assert b"serving MCP over streamable HTTP" in err


async def _listed(url: str) -> dict[str, Any] | None:
    """``list_rollouts`` over HTTP; None while the server does not answer yet."""
    try:
        async with Client(url) as client:
            return result(await client.call_tool("list_rollouts", {}))
    except (OSError, ExceptionGroup):
        return None
