"""/readyz's watch of the brokers: silent past the limit, asked again soon after a failure.

Fault injection: the metadata request is a function that fails or answers as told, on
a clock the test moves.
"""

from __future__ import annotations

import asyncio

import pytest

from controller.core.common import BrokerUnavailable
from controller.daemon.serving import BrokerWatch
from controller.settings import KafkaSettings, Settings
from tests.support.waiting import eventually


class Brokers:
    """Answers a metadata request unless ``down``; counts the requests."""

    def __init__(self) -> None:
        self.down = False
        self.asked = 0

    async def probe(self, timeout_s: float) -> object:
        self.asked += 1
        if self.down:
            raise BrokerUnavailable("connection refused")
        return ["events"]


def watch(brokers: Brokers, now: list[float]) -> BrokerWatch:
    """A watch with a limit of 30 s, on the clock ``now[0]``."""
    settings = Settings(kafka=KafkaSettings(unanswered_after_seconds=30.0))
    return BrokerWatch(settings, probe=brokers.probe, clock=lambda: now[0], retry_s=0.01)


@pytest.mark.parametrize(
    ("down", "quiet", "silent"),
    [
        (False, 60.0, False),  # answered just now: however long before
        (True, 29.0, False),  # not answered, within the limit
        (True, 31.0, True),  # not answered past the limit
    ],
)
async def test_silent_only_once_no_answer_came_for_the_whole_limit(
    down: bool, quiet: float, silent: bool
) -> None:
    brokers, now = Brokers(), [0.0]
    watched = watch(brokers, now)
    brokers.down = down
    now[0] = quiet
    await watched.probe()
    reason = watched.silent()
    assert (reason is not None) == silent, reason
    if silent:
        assert reason is not None
        assert "kafka.unanswered_after_seconds" in reason
        assert "connection refused" in reason


async def test_after_a_failed_request_it_asks_again_at_once_and_is_ready_at_the_answer() -> None:
    # Given brokers that stopped answering past the limit
    brokers, now = Brokers(), [0.0]
    watched = watch(brokers, now)
    brokers.down = True
    now[0] = 40.0
    # and a twin watch on the same loop whose brokers stay down: it asks at its retry pace
    twin_brokers = Brokers()
    twin_brokers.down = True
    twin = watch(twin_brokers, now)
    running = [asyncio.create_task(watched.run()), asyncio.create_task(twin.run())]
    try:
        await eventually(
            lambda: brokers.asked and watched.silent(), timeout=5, what="asked, and silent"
        )
        # When they answer again (a third of the limit is 10 s: far past the test's bound)
        brokers.down = False
        # Then the watch asks again within its retry, and is no longer silent
        await eventually(
            lambda: watched.silent() is None, timeout=5, what="the brokers seen as back"
        )
        asked, twin_asked = brokers.asked, twin_brokers.asked
        assert asked >= 2, asked
        # and, answered, it waits its full third before the next request: meanwhile the
        # twin has asked again five times, each after a retry's wait
        await eventually(
            lambda: twin_brokers.asked >= twin_asked + 5,
            timeout=5,
            what="five retries of the twin watch",
        )
        assert brokers.asked == asked
    finally:
        watched.stop()
        twin.stop()
        await asyncio.gather(*running)
