"""Held events partitions' ``ingest`` commands need ``manage_ingest`` in every environment:
the events topic serves them all, so a key whose roles reach only some is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from controller.adapters.memory import MemoryOutputs
from controller.adapters.redis.aggregates import connect
from controller.adapters.redis.ingest_progress import GapStore
from controller.core.release import Environments, KeyRecord, Permission, Role, RoleBook
from controller.core.trust import signing
from controller.core.wire import sent_object
from controller.ctl.operate.ingest import command_of
from controller.daemon.registries import Keyring, Registry
from controller.daemon.rollouts.ingest_commands import IngestCommands
from controller.settings import RedisSettings

pytestmark = pytest.mark.integration

BOOK = RoleBook(
    roles=(
        Role(name="dev", actions=tuple(Permission), environments=("dev",)),
        Role(name="sre", actions=(Permission.MANAGE_INGEST,), environments=("*",)),
        Role(name="release", actions=(Permission.START, Permission.KILL), environments=("*",)),
    )
)
ENVIRONMENTS = Environments(names=("dev", "production"), default="production")


@pytest.mark.parametrize(
    ("roles", "reason"),
    [
        (("sre",), "no events partition is held"),  # allowed: there is simply nothing held
        ((), "no events partition is held"),  # no roles named: the built-in operator
        (("dev",), "may not manage_ingest"),
        (("release",), "may not manage_ingest"),
    ],
    ids=["sre", "operator", "dev", "release"],
)
async def test_an_ingest_command_needs_manage_ingest_everywhere(
    redis_url: str, redis_namespace: str, roles: tuple[str, ...], reason: str
) -> None:
    private, public = signing.generate_key()
    keys = Keyring(Registry({"k": KeyRecord(public_key=public, roles=roles)}, BOOK, ENVIRONMENTS))
    outputs = MemoryOutputs()
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    async with connect(settings) as client:
        commands = IngestCommands(
            stores={"events": GapStore(client, settings=settings, topic="events")},
            events_topic="events",
            outputs=outputs,
            keys=keys,
            decisions_topic="decisions",
            max_age_seconds=300,
            clock=lambda: datetime.now(UTC),
        )
        command = signing.sign_command(
            command_of("reread", partitions=[], actor="ana", key_id="k"), private
        )
        await commands.apply(command, sent_object(command))
    [(topic, _, value)] = outputs.sent
    decision = orjson.loads(value)
    assert (topic, decision["kind"], decision["outcome"]) == ("decisions", "ingest", "rejected")
    assert reason in decision["reason"], decision["reason"]
