"""Flag-less alerts are retried until the broker has them, whatever it answers meanwhile.

Fault injection: the outputs refuse the first tries as a broker whose topics
are being made again does (a refusal it calls permanent among them), then
take the alert; one too large is given up; one raised before the producer
exists waits for it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from controller.core.common import BrokerError, BrokerUnavailable, MessageTooLarge
from controller.core.rollouts import RaiseAlert
from controller.daemon.outputs import Alarms
from controller.settings import RetrySettings, TopicSettings
from tests.support.waiting import eventually

FAST = RetrySettings(initial_seconds=0.01, max_seconds=0.02)
GAP = RaiseAlert("events_log_gap", "critical", "held", {"partition": 0})


class RefusingOutputs:
    """Refuses with ``refusals`` in turn, then keeps what it is given."""

    def __init__(self, *refusals: Exception) -> None:
        self._refusals = list(refusals)
        self.tries = 0
        self.sent: list[tuple[str, str, bytes]] = []

    async def publish(self, messages: list[tuple[str, str, bytes]]) -> None:
        self.tries += 1
        if self._refusals:
            raise self._refusals.pop(0)
        self.sent.extend(messages)


def _alarms() -> Alarms:
    return Alarms(topics=TopicSettings(), clock=lambda: datetime.now(UTC), retry=FAST)


@pytest.mark.parametrize(
    "refusals",
    [
        (),
        (BrokerUnavailable("away"),),
        (BrokerError("UnknownError: the topic is being created", retriable=False),),
        (BrokerError("refused"), BrokerUnavailable("away"), BrokerError("refused again")),
    ],
)
async def test_an_alert_is_published_whatever_the_broker_answered_first(
    refusals: tuple[Exception, ...],
) -> None:
    outputs = RefusingOutputs(*refusals)
    alarms = _alarms()
    alarms.attach(outputs)
    alarms(GAP)
    await eventually(lambda: outputs.sent, timeout=30, what="the alert published")
    [(topic, key, value)] = outputs.sent
    assert (topic, key) == ("rollout.alerts", "events_log_gap")
    assert orjson.loads(value)["severity"] == "critical"
    assert outputs.tries == len(refusals) + 1
    await alarms.stop()


async def test_an_alert_too_large_for_the_broker_is_given_up() -> None:
    outputs = RefusingOutputs(MessageTooLarge("too large"))
    alarms = _alarms()
    alarms.attach(outputs)
    alarms(GAP)
    await eventually(lambda: outputs.tries == 1, timeout=30, what="the one try")
    await alarms.stop()
    assert (outputs.tries, outputs.sent) == (1, [])


async def test_an_alert_raised_before_the_producer_waits_for_it() -> None:
    alarms = _alarms()
    alarms(GAP, "checkout")
    outputs = RefusingOutputs()
    alarms.attach(outputs)
    await eventually(lambda: outputs.sent, timeout=30, what="the early alert published")
    assert [key for _, key, _ in outputs.sent] == ["checkout"]
    await alarms.stop()
