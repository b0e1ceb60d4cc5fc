"""``rolloutctl kill`` when the broker goes away after the command was sent.

The command is on the commands topic, so it may still apply: the exit code is
4, no decision in time, as documented, never 1 (which says the broker could
not be reached and nothing was sent) nor a traceback. The test owns its
broker, a real one, to take it away.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.ctl.exits import EXIT_NO_DECISION
from controller.ctl.operate.commands import write_private_key
from controller.dev.processes import ManagedProcess
from controller.settings import TopicSettings
from tests.support.backing.kafka_service import own_broker
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROLLOUTCTL = str(Path(sys.executable).with_name("rolloutctl"))
TOPICS = TopicSettings()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[str, ManagedProcess]]:
    bootstrap, process = own_broker(tmp_path)
    try:
        yield bootstrap, process
    finally:
        process.stop()


async def sent_command(bootstrap: str) -> bytes:
    """The first record on the commands topic, once the broker has it."""
    reader = AIOKafkaConsumer(
        TOPICS.commands, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await reader.start()
    try:
        while True:
            for records in (await reader.getmany(timeout_ms=200)).values():
                value = records[0].value
                assert isinstance(value, bytes)
                return value
    finally:
        await reader.stop()


async def test_a_kill_sent_before_the_broker_went_away_exits_no_decision_in_time(
    broker: tuple[str, ManagedProcess], tmp_path: Path
) -> None:
    bootstrap, process = broker
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, 1, 1) for name in (TOPICS.commands, TOPICS.decisions)]
        )
    finally:
        await admin.close()
    key_file = tmp_path / "ops-1.key"
    write_private_key(key_file, Ed25519PrivateKey.generate())
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ROLLOUTCTL_KEY": str(key_file),
        "ROLLOUTCTL_KEY_ID": "ops-1",
        "ROLLOUTCTL_ACTOR": "ana",
        "ROLLOUTCTL_URL": f"http://127.0.0.1:{free_port()}",  # no controller answers
    }
    kill = await asyncio.create_subprocess_exec(
        ROLLOUTCTL,
        *("kill", "checkout", "--reason", "errors up", "--timeout", "8"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    # When the broker goes away once it holds the command
    command = await asyncio.wait_for(sent_command(bootstrap), timeout=30)
    assert b'"action":"kill"' in command
    process.stop()
    # Then no decision came in time, and the operator is told the command went out
    _, err = await asyncio.wait_for(kill.communicate(), timeout=60)
    said = err.decode()
    assert (kill.returncode, "Traceback" in said) == (EXIT_NO_DECISION, False), said
    assert "sent kill checkout" in said
