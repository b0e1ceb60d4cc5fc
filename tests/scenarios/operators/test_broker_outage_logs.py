"""A broker outage is logged once per cause per interval, with a count, not a line per retry.

While the broker is away, the Kafka client (aiokafka) logs every failed connection,
metadata request, fetch and coordinator lookup: a 17 s outage wrote 2,671 lines. The
daemon shows each cause once per ``log.repeat_interval_seconds``, the next line
saying how many were held back. Here the interval is 1 s and the broker is stopped
until the daemon has told three intervals of held-back lines, then started again.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KafkaBrokerFactory
from tests.scenarios.brokers.lost_broker import lost_broker_world, ready
from tests.scenarios.harness import Scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INTERVAL = 1.0
NUMBERS = re.compile(r"\d+")
TOLD = re.compile(r" \(repeated \d+ times in [\d.]+ s\)$")


def library_lines(world: Scenario, start: int) -> list[dict[str, Any]]:
    """The Kafka client's warnings and errors the daemon logged after byte ``start``."""
    with world.daemon.log_path.open("rb") as log:
        log.seek(start)
        text = log.read().decode(errors="replace")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [
        line
        for line in lines
        if str(line.get("logger", "")).startswith("aiokafka")
        and line.get("level") in {"warning", "error"}
    ]


def told(world: Scenario, start: int) -> int:
    """How many lines told a count of lines held back before them."""
    return sum(1 for line in library_lines(world, start) if "repeated" in line)


def cause(line: dict[str, Any]) -> tuple[str, str, str]:
    """A cause, as finely as the text allows: numbers (node ids, ports) do not count."""
    event = NUMBERS.sub("#", TOLD.sub("", str(line["event"])))
    return (str(line["logger"]), str(line["level"]), event)


async def test_a_broker_outage_is_logged_once_per_cause_per_interval_with_a_count(
    kafka_broker_factory: KafkaBrokerFactory, redis_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    broker = kafka_broker_factory()
    async with lost_broker_world(
        broker.bootstrap,
        redis_url,
        redis_namespace,
        tmp_path,
        RC_LOG__REPEAT_INTERVAL_SECONDS=str(INTERVAL),
    ) as (world, url):
        # Given a daemon reading from the broker
        world.start_daemon()
        await world.until(lambda: ready(url), timeout=60, what="/readyz ready")
        start = world.daemon.log_path.stat().st_size

        # When the broker is away for several intervals, and comes back
        broker.kill()
        await world.until(
            lambda: told(world, start) >= 3,
            timeout=120,
            what="three lines telling the connection errors held back",
        )
        broker.start()
        await world.until(lambda: ready(url), timeout=120, what="/readyz ready again")

        # Then each cause took at most one line per interval of the outage
        lines = library_lines(world, start)
        by_cause: dict[tuple[str, str, str], list[datetime]] = defaultdict(list)
        for line in lines:
            by_cause[cause(line)].append(datetime.fromisoformat(line["timestamp"]))
        stamps = sorted(at for ats in by_cause.values() for at in ats)
        intervals = (stamps[-1] - stamps[0]).total_seconds() / INTERVAL
        for each, ats in by_cause.items():
            assert len(ats) <= intervals + 2, (each, len(ats), intervals)
        assert len(lines) <= len(by_cause) * (intervals + 2), (len(lines), len(by_cause))
        # and told how many it held back: more than it showed
        held = sum(int(line.get("repeated", 0)) for line in lines)
        assert held > len(lines), (held, len(lines))
        refused = [line for line in lines if "Unable connect to node" in line["event"]]
        assert any("repeated" in line for line in refused), refused
        assert world.daemon.running, world.daemon.log_text()[-3000:]
