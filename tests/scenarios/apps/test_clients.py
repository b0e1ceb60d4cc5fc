"""Apps following the daemon: a Kafka client and an HTTP poller serve the same arms."""

from __future__ import annotations

import pytest

from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm
from controller.sdk import FlagClient
from controller.sdk.poller import FlagPoller
from controller.settings import KafkaSettings
from tests.scenarios.harness import Scenario, manual_plan
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "pricing.v2"
UNITS = [f"user-{i}" for i in range(5000)]


async def test_kafka_and_http_clients_agree_with_the_daemon_across_stages(
    scenario: Scenario,
) -> None:
    port = free_port()
    # Apps poll /flags without a key here; who may read it is test_read_access's subject.
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__PUBLIC_FLAGS="true")
    scenario.start_daemon()
    kafka = KafkaSettings(bootstrap_servers=scenario.bootstrap)
    topic = scenario.topics["flag_state"]
    await scenario.start(FLAG, manual_plan())
    async with (
        FlagClient(kafka, topic=topic) as one,
        FlagClient(kafka, topic=topic) as two,
        FlagPoller(f"http://127.0.0.1:{port}", interval=0.1) as poller,
    ):
        for stage, percent in enumerate((1, 5, 25)):
            # Given the daemon at a stage (as it stores it)
            rollout: _Rollout = await scenario.until(
                lambda s=stage: _at_stage(scenario, s),  # type: ignore[misc]
                timeout=30,
                what=f"stage {stage}",
            )
            want = rollout.flag_version
            # When every app has caught up with that version
            await scenario.until(
                lambda w=want: all(  # type: ignore[misc]
                    c.state(FLAG) is not None and c.state(FLAG).version == w  # type: ignore[union-attr]
                    for c in (one, two, poller)
                ),
                timeout=30,
                what=f"clients at version {want}",
            )
            # Then all of them serve every unit the arm the daemon's state implies
            expected = [(assign(FLAG, rollout.salt, u, percent), want) for u in UNITS]
            for client in (one, two, poller):
                assert [client.arm(FLAG, u) for u in UNITS] == expected
            share = sum(arm is Arm.TREATMENT for arm, _ in expected) / len(UNITS)
            assert abs(share - percent / 100) < 0.02 + percent / 100 * 0.3
            await scenario.send(scenario.command("promote", FLAG), flag=FLAG)
        await scenario.until(lambda: _at_stage(scenario, 3), timeout=30, what="stage 3")
        await scenario.send(scenario.command("kill", FLAG, reason="test"), flag=FLAG)
        await scenario.until(
            lambda: all(c.arm(FLAG, "user-1") == (Arm.CONTROL, 0) for c in (one, two, poller)),
            timeout=30,
            what="every client to serve control after the kill",
        )
    assert poller.failures == 0
    assert poller.polls >= 4  # at least one answer per state it had to follow


def _at_stage(scenario: Scenario, stage: int) -> _Rollout | None:
    states = [s for s in scenario.observed.flag_states if s["flag"] == FLAG]
    if not states or states[-1]["stage"] != stage or states[-1]["status"] != "rolling_out":
        return None
    return _Rollout(states[-1]["version"], states[-1]["salt"])


class _Rollout:
    def __init__(self, flag_version: int, salt: str) -> None:
        self.flag_version, self.salt = flag_version, salt
