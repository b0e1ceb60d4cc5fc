"""The topic keeper's words for a check that failed: a refusal is a warning once a minute
while it lasts, with the looks between counted; a broker away or slow is a debug line."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from controller.core.common import BrokerError, BrokerUnavailable, ControllerError
from controller.daemon.running import topics as keeping
from controller.daemon.running.topics import REFUSAL_REPEAT_SECONDS, TopicKeeper
from controller.settings import KafkaSettings, TopicSettings

POLICY = BrokerError("the broker would not create the topics: t: PolicyViolationError")
FACTOR = BrokerError("the broker would not create the topics: t: InvalidReplicationFactorError")
AWAY = BrokerUnavailable("no broker answers")


async def said(failures: list[tuple[float, ControllerError]]) -> list[MutableMapping[str, Any]]:
    """What the keeper logged for each look, failing at its time with its error."""
    now = [0.0]
    keeper = TopicKeeper(
        kafka=KafkaSettings(), topics=TopicSettings(), alarm=lambda _: None, clock=lambda: now[0]
    )
    lines = []
    for at, error in failures:
        now[0] = at

        async def refuse(*_: object, error: ControllerError = error) -> list[str]:
            raise error

        with pytest.MonkeyPatch.context() as patch, capture_logs() as logs:
            patch.setattr(keeping, "ensure_topics", refuse)
            assert await keeper.check() == []
        [line] = [e for e in logs if e["event"] == "topic_check_skipped"]
        lines.append(line)
    return lines


async def test_a_lasting_refusal_is_a_warning_once_a_minute_with_the_looks_between() -> None:
    looks = [(2.0 * i, POLICY) for i in range(30)]  # a minute of looks, 2 s apart
    lines = await said([*looks, (REFUSAL_REPEAT_SECONDS + 1, POLICY)])
    assert [line["log_level"] for line in lines] == ["warning"] + ["debug"] * 29 + ["warning"]
    assert "repeated" not in lines[0]
    assert lines[-1]["repeated"] == 29
    assert lines[-1]["repeated_seconds"] == 58.0


@pytest.mark.parametrize(
    ("failures", "levels"),
    [
        ([(0, POLICY), (2, FACTOR), (4, POLICY)], ["warning", "warning", "debug"]),
        ([(0, AWAY), (2, AWAY), (4, POLICY)], ["debug", "debug", "warning"]),
        ([(0, POLICY), (2, AWAY), (4, POLICY)], ["warning", "debug", "debug"]),
    ],
    ids=["another-reason-is-warned-at-once", "a-broker-away-is-quiet", "away-between-refusals"],
)
async def test_what_each_look_says(
    failures: list[tuple[float, ControllerError]], levels: list[str]
) -> None:
    assert [line["log_level"] for line in await said(failures)] == levels
