"""A broker that loses its data, pinned to one port, and its helpers.

Each start of :class:`RestartableBroker` is an empty broker at the address the
daemon knows, as after a cluster rebuilt or a broker whose storage was lost: on
Apache Kafka (the tests' broker, :func:`tests.support.backing.kafka_service.chosen_broker`) a
fresh node, formatted in a new log dir, on the same port; on the embedded tansu
(memory storage) the same binary started again.
"""

from __future__ import annotations

import contextlib
import gc
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.adapters.kafka import ensure_topics, topic_names
from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.core.trust import signing
from controller.ctl.app import main
from controller.dev.kafka_broker import KafkaBroker
from controller.settings import KafkaSettings, RedisSettings, TopicSettings
from tests.scenarios.harness import KEY_ID, TOPICS, Scenario
from tests.support.backing.kafka_service import chosen_broker
from tests.support.backing.services import (
    ManagedProcess,
    ServiceUnavailable,
    free_port,
    start_embedded_broker,
)

PARTITIONS = 4
FLAG = "checkout"
"""The events topic's partitions."""


class RestartableBroker:
    """A broker pinned to one port; each start is an empty broker."""

    def __init__(self, log_dir: Path, *, kafka: bool | None = None) -> None:
        """``kafka``: Apache Kafka or tansu; None: the broker the session runs on."""
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log_dir = log_dir
        self._process: ManagedProcess | None = None
        self._on_kafka = chosen_broker() == "kafka" if kafka is None else kafka
        self._starts = 0

    def start(self) -> None:
        if not self._on_kafka:
            _, self._process = start_embedded_broker(self._log_dir, port=self.port)
            return
        self._starts += 1  # a new log dir: the node knows nothing of the last one
        node = KafkaBroker(self._log_dir / f"node-{self._starts}", port=self.port).start()
        self._process = node.process

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process = None

    def lose_data(self) -> None:
        """Come back empty, at the same address."""
        self.kill()
        self.start()


def started(restartable: RestartableBroker) -> Iterator[RestartableBroker]:
    """``restartable`` started, killed at the end; missing, the test fails under CI."""
    try:
        restartable.start()
    except ServiceUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"SERVICE MISSING: {exc} (CI is set, so a missing service is a failure)")
        pytest.skip(f"SERVICE MISSING: {exc}")
    try:
        yield restartable
    finally:
        restartable.kill()


def lost_topics() -> dict[str, str]:
    """Fresh names for one test's topics, the events topic among them."""
    run = uuid.uuid4().hex[:8]
    return {name: f"lost.{run}.{name}" for name in ("events", *TOPICS)}


def kafka_of(bootstrap: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap, events_partitions=PARTITIONS)


def topic_settings(topics: dict[str, str]) -> TopicSettings:
    return TopicSettings.model_validate(topics)


UNCLOSED_CONNECTION = "Unclosed AIOKafkaConnection"
"""The warning of a connection aiokafka set up halfway and never closed."""


@contextlib.contextmanager
def broker_may_die() -> Iterator[None]:
    """Around a scenario whose broker stops or loses its data: the harness's own producer and
    observers reconnect to it, and when a broker dies during a connection's handshake
    aiokafka can leave that connection open (its issue "Connection should be close if there
    is a failure during start", open), its ``__del__`` warning whenever it is collected. Only
    that warning is ignored, and what is left is collected before the scenario ends: never
    in a later test of the worker."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", UNCLOSED_CONNECTION, ResourceWarning)
        yield
        gc.collect()


@contextlib.asynccontextmanager
async def lost_broker_world(
    bootstrap: str, redis_url: str, prefix: str, workdir: Path, **settings: str
) -> AsyncIterator[tuple[Scenario, str]]:
    """A scenario on the broker at ``bootstrap``, its topics made first, and its ``/readyz`` URL.

    The daemon reads :data:`PARTITIONS` events partitions and answers health on a port
    of its own; ``settings`` are more of its environment (``RC_...``).
    """
    topics = lost_topics()
    await ensure_topics(kafka_of(bootstrap), topic_settings(topics))
    health = free_port()
    with broker_may_die():
        async with Scenario(
            bootstrap=bootstrap, redis_url=redis_url, prefix=prefix, topics=topics, workdir=workdir
        ) as world:
            world.configure(
                RC_KAFKA__EVENTS_PARTITIONS=str(PARTITIONS),
                RC_HTTP__HEALTH_PORT=str(health),
                **settings,
            )
            yield world, f"http://127.0.0.1:{health}/readyz"


async def topics_exist(bootstrap: str, topics: dict[str, str]) -> bool:
    """Whether the broker has every topic of ``topics`` (asserted, for waiting on it)."""
    names = await topic_names(kafka_of(bootstrap), timeout_s=5)
    assert set(topics.values()) <= names, sorted(names)
    return True


async def readyz(url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=3) as client:
        answer = await client.get(url)
    return answer.status_code, answer.json()


def rolloutctl(world: Scenario, keys: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    """``rolloutctl ARGV``, signed with the scenario's operator key, on its topics."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", world.bootstrap)
    monkeypatch.setenv("RC_TOPICS__COMMANDS", world.topics["commands"])
    monkeypatch.setenv("RC_TOPICS__DECISIONS", world.topics["decisions"])
    key = keys / f"{KEY_ID}.key"
    if not key.exists():
        keys.mkdir(parents=True, exist_ok=True)
        key.write_text(signing.private_key_text(world.key), encoding="ascii")
        key.chmod(0o600)
    signed = ["--key", str(key), "--key-id", KEY_ID, "--actor", "ops", "--timeout", "30"]
    return main([*argv, *signed])


async def stored_offsets(world: Scenario) -> dict[int, int | None]:
    """The next offset to count of each events partition, as Redis holds it."""
    settings = RedisSettings(url=world.redis_url, key_prefix=world.prefix)
    async with connect(settings) as client:
        store = RedisAggregateStore(client, settings=settings, topic=world.topics["events"])
        return {p: await store.offset(p) for p in range(PARTITIONS)}


async def counted(world: Scenario) -> int:
    settings = RedisSettings(url=world.redis_url, key_prefix=world.prefix)
    async with connect(settings) as client:
        store = RedisAggregateStore(client, settings=settings, topic=world.topics["events"])
        agg = await store.read(FLAG, range(1, 20))
    return sum(arm.exposures + arm.requests for arm in (agg.treatment, agg.control))


def held_alerts(world: Scenario) -> list[dict[str, Any]]:
    return [a for a in world.observed.alerts if a["kind"] == "events_log_gap"]


async def ready(url: str) -> bool:
    status, body = await readyz(url)
    assert status == 200, body
    return True
