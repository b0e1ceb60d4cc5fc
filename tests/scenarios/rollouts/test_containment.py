"""One bad output or one damaged flag never stops the others: the real daemon, broker and Redis.

An outbox message that can never be published (too large for the broker,
or unreadable) is set aside with an alert, and the flag's later messages,
a kill above all, still go out. A command that fails while it is applied,
or a flag whose stored state is damaged, is confined to itself: the command
goes to the DLQ with the reason, one alert is raised, and every other flag
is still steered and gated.
"""

from __future__ import annotations

import re
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from controller.core.trust import signing
from controller.ports import OutboxMessage
from tests.scenarios.harness import Scenario, manual_plan
from tests.support.waiting import eventually

TOO_LARGE = 2 * 1024 * 1024


async def _dead_letters(scenario: Scenario, expected: int) -> list[dict[str, bytes]]:
    consumer = AIOKafkaConsumer(
        scenario.topics["dlq"], bootstrap_servers=scenario.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[dict[str, bytes]] = []
    try:

        async def read() -> bool:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                found.extend(dict(r.headers) for r in records)
            assert len(found) >= expected, f"{len(found)} dead letters of {expected}"
            return True

        await eventually(read, timeout=20, what=f"{expected} dead letters")
    finally:
        await consumer.stop()
    return found


async def test_an_unpublishable_output_is_quarantined_and_the_kill_still_goes_out(
    scenario: Scenario,
) -> None:
    # Given a running rollout
    scenario.start_daemon()
    await scenario.start("wedged", manual_plan())
    await scenario.until(
        lambda: any(s["flag"] == "wedged" for s in scenario.observed.flag_states),
        timeout=30,
        what="the rollout to start",
    )
    # When its outbox holds a message too large for any broker, and an unreadable entry
    huge = OutboxMessage(scenario.topics["decisions"], "wedged", b'"' + b"x" * TOO_LARGE + b'"')
    async with aioredis.Redis.from_url(scenario.redis_url) as client:
        outbox = f"{{{scenario.prefix}:flag:wedged}}:outbox"
        await client.rpush(outbox, huge.encode(), b"{not an outbox entry")
    # and the operator kills the flag
    await scenario.send(scenario.command("kill", "wedged", reason="bad"), flag="wedged")

    # Then the kill reaches the apps, and both messages are set aside with an alert each
    killed = await scenario.until(
        lambda: any(
            s["flag"] == "wedged" and s["status"] == "killed" for s in scenario.observed.flag_states
        ),
        timeout=30,
        what="the kill to be published",
    )
    assert killed

    def quarantined() -> list[dict[str, Any]]:
        found = [a for a in scenario.observed.alerts if a["kind"] == "output_quarantined"]
        return found if len(found) >= 2 else []

    alerts = await scenario.until(quarantined, timeout=20, what="two quarantine alerts")
    assert {a["details"]["topic"] for a in alerts} == {scenario.topics["decisions"], "unreadable"}
    assert all(a["flag"] == "wedged" for a in alerts)
    assert scenario.daemon.running, scenario.daemon.log_text()[-3000:]
    async with aioredis.Redis.from_url(scenario.redis_url) as client:
        quarantine = f"{{{scenario.prefix}:flag:wedged}}:quarantine"
        assert await client.llen(quarantine) == 2
        assert await client.llen(f"{{{scenario.prefix}:flag:wedged}}:outbox") == 0


async def test_a_damaged_flag_is_confined_and_the_other_flags_are_still_steered(
    scenario: Scenario,
) -> None:
    # Given a flag whose stored state someone overwrote with garbage
    async with aioredis.Redis.from_url(scenario.redis_url) as client:
        await client.hset(
            f"{{{scenario.prefix}:flag:broken}}:state", mapping={"rev": 3, "doc": "garbage"}
        )
        await client.sadd(f"{scenario.prefix}:rollouts", "broken")
    scenario.start_daemon()
    # When the operator kills it, then starts another flag
    await scenario.send(scenario.command("kill", "broken", reason="x"), flag="broken")
    await scenario.start("healthy", manual_plan())

    # Then the other flag starts
    await scenario.until(
        lambda: scenario.observed.decision_where(flag="healthy", action="start", outcome="applied"),
        timeout=30,
        what="the healthy flag to start",
    )
    # and the kill that could not be applied is in the DLQ with its reason, and alerted
    letters = await _dead_letters(scenario, 1)
    assert [h["rc.reason"] for h in letters] == [b"processing_error"]
    assert b"unreadable" in letters[0]["rc.detail"]
    await scenario.until(
        lambda: len(re.findall(r'"where": "gate"', scenario.daemon.log_text())) >= 3,
        timeout=30,
        what="three gate passes over the damaged flag",
    )
    failures = [a for a in scenario.observed.alerts if a["kind"] == "input_failed"]
    wheres = sorted(a["details"]["where"] for a in failures)
    assert wheres == ["command", "gate"], failures
    assert scenario.daemon.running, scenario.daemon.log_text()[-3000:]
    # A restart does not crash on it either
    scenario.daemon.kill()
    scenario.start_daemon()
    await scenario.send(scenario.command("pause", "healthy", reason="check"), flag="healthy")
    await scenario.until(
        lambda: scenario.observed.decision_where(flag="healthy", action="pause", outcome="applied"),
        timeout=30,
        what="a command after the restart",
    )
    assert scenario.daemon.running


async def test_an_oversized_or_deeply_nested_command_is_dead_lettered_unread(
    scenario: Scenario,
) -> None:
    scenario.start_daemon()
    # When a command far over any plan's size, and one nested past every parser's limit, arrive
    await scenario.send(b'{"pad": "' + b"x" * 300_000 + b'"}', flag="noise")
    await scenario.send(b'{"a":' * 5000 + b"1" + b"}" * 5000, flag="noise")
    # and then a valid one
    await scenario.start("after", manual_plan())
    # Then the valid one is applied, and both are in the DLQ with their reasons
    await scenario.until(
        lambda: scenario.observed.decision_where(flag="after", action="start", outcome="applied"),
        timeout=30,
        what="the command after the oversized one",
    )
    letters = await _dead_letters(scenario, 2)
    assert sorted(h["rc.reason"] for h in letters) == [b"oversize", b"schema_violation"]
    assert scenario.daemon.running


async def test_a_plan_with_a_negative_duration_is_refused_with_the_field_named(
    scenario: Scenario,
) -> None:
    scenario.start_daemon()
    # When a start carries a plan with a negative duration, correctly signed
    for flag, field, value in (
        ("neg-max", ("stages", 0, "max_duration"), "-PT1H"),
        ("neg-min", ("stages", 1, "min_duration"), -60),
        ("neg-grace", ("no_traffic_grace",), "-PT15M"),
    ):
        command = scenario.command("start", flag, plan=manual_plan())
        target = command["plan"]
        for part in field[:-1]:
            target = target[part]
        target[field[-1]] = value
        del command["sig"]
        command["sig"] = signing.sign(command, scenario.key)
        await scenario.send(command, flag=flag)
        # Then it is rejected, and the reason names the field
        rejected = await scenario.until(
            lambda f=flag: scenario.observed.decision_where(  # type: ignore[misc]
                flag=f, action="start", outcome="rejected"
            ),
            timeout=30,
            what=f"{flag} to be rejected",
        )
        assert ".".join(str(p) for p in field) in rejected["reason"], rejected["reason"]
    # and nothing started: no flag state, no alert
    assert not scenario.observed.flag_states
    assert not scenario.observed.alerts
