"""A store that lost its set of the flags while no controller ran, its identity kept, on a
real Redis and Apache Kafka: at start, the flags the topics name whose states are kept are
listed again (served, and read by the gates' sweeps), and those whose states are gone are
rebuilt, told by one alert."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from controller.adapters.memory import MemoryAggregates, MemoryOutputs
from controller.adapters.redis import RolloutStore, StoreMarker, connect
from controller.core.rollouts import RaiseAlert
from controller.daemon.rollouts.engine import build_engine
from controller.daemon.running.rebuilding import HistoryRead, Rebuilder, topic_history
from controller.daemon.running.store_keeper import StoreKeeper
from controller.daemon.serving import LossGuard, StoreLoss
from controller.daemon.serving.read_worker import flag_states
from controller.ports import DeadLetter, SaveOutcome, StateWrite
from controller.settings import (
    EngineSettings,
    KafkaSettings,
    LlmSettings,
    RedisSettings,
    TopicSettings,
)
from tests.support.backing.topics import fresh_topics
from tests.unit.core.drafting.test_rebuild import PLAN
from tests.unit.daemon.serving.test_store_loss import rollout

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 9, tzinfo=UTC)


class NoDeadLetters:
    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        raise AssertionError(f"unexpected dead letters: {letters}")


def _records(flag: str, stage: int) -> list[tuple[str, bytes]]:
    """What the topics hold of ``flag``'s rollout started and promoted to ``stage``."""
    rollout_id, command_id = f"r-{flag}", f"c-{flag}"
    plan = PLAN.model_dump(mode="json")
    start = {"type": "command", "id": command_id, "action": "start", "plan": plan}
    decisions = [
        {
            "type": "decision",
            "id": f"d-{flag}-{n}",
            "flag": flag,
            "rollout_id": rollout_id,
            "kind": "command",
            "action": "start" if n == 0 else "promote",
            "outcome": "applied",
            "phase_after": "running",
            "stage": n,
            "command_id": command_id if n == 0 else f"c-{flag}-{n}",
        }
        for n in range(stage + 1)
    ]
    state: dict[str, object] = {"type": "flag_state", "flag": flag, "rollout_id": rollout_id}
    state |= {"salt": "s", "version": stage + 1}
    return [
        ("commands", orjson.dumps(start)),
        *(("decisions", orjson.dumps(d)) for d in decisions),
        ("flag_state", orjson.dumps(state)),
    ]


async def _publish(bootstrap: str, topics: dict[str, str], flag: str, stage: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value in _records(flag, stage):
            await producer.send_and_wait(topics[key], value, key=flag.encode())
    finally:
        await producer.stop()


def _starting(
    states: RolloutStore,
    marker: StoreMarker,
    loss: StoreLoss,
    read: HistoryRead,
    topics: TopicSettings,
    alerts: list[RaiseAlert],
) -> StoreKeeper:
    """The store keeper of a controller starting: its engine's rollouts, a rebuilder that
    reads the topics with ``read``, and every flag its own."""
    engine = build_engine(
        settings=EngineSettings(),
        topics=topics,
        states=states,
        aggregates=MemoryAggregates(),
        outputs=MemoryOutputs(),
        dead_letters=NoDeadLetters(),
        llm=LlmSettings(mode="off"),
        advisor=None,
        clock=lambda: NOW,
    )
    rebuilder = Rebuilder(
        rollouts=engine.rollouts,
        states=states,
        read=read,
        owns=lambda _flag: True,
        loss=loss,
        clock=lambda: NOW,
    )
    return StoreKeeper(
        marker=marker, states=states, loss=loss, alarm=alerts.append, rebuilder=rebuilder
    )


async def test_flags_the_set_lost_while_no_controller_ran_are_listed_again_at_start(
    redis_url: str, redis_namespace: str, apache_kafka_bootstrap: str
) -> None:
    bootstrap = apache_kafka_bootstrap
    named = await fresh_topics(
        bootstrap, "unlisted", {"commands": 1, "decisions": 1, "flag_state": 1}
    )
    topics = TopicSettings(
        commands=named["commands"], decisions=named["decisions"], flag_state=named["flag_state"]
    )
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    alerts: list[RaiseAlert] = []
    async with connect(settings) as client:
        states, marker = (
            RolloutStore(client, settings=settings),
            StoreMarker(client, settings=settings),
        )
        # Given a store a controller claimed, holding checkout's state at its third stage,
        # and the topics naming checkout, and search at its second stage
        _, written = await marker.claim()
        assert written
        saved = await states.save("checkout", StateWrite(rev=0, rollout=rollout("checkout", 2)))
        assert saved is SaveOutcome.SAVED
        await _publish(bootstrap, named, "checkout", 2)
        await _publish(bootstrap, named, "search", 1)
        # When, no controller running, the set of the flags is lost (on a cluster, with its
        # master's data), and search's state with it; the identity kept
        await client.delete(
            f"{redis_namespace}:rollouts", f"{{{redis_namespace}:flag:search}}:state"
        )
        assert await states.flags() == set()
        # ...and a controller starts
        loss = StoreLoss()
        read = topic_history(KafkaSettings(bootstrap_servers=bootstrap), topics)
        keeper = _starting(states, marker, loss, read, topics, alerts)
        assert await keeper.check() is False
        # Then checkout, its state kept, is listed again as it was: the gates' sweeps read it
        assert await states.flags() == {"checkout", "search"}
        swept = await states.load_all()
        kept = swept["checkout"]
        assert not isinstance(kept, Exception)
        assert kept.rollout == rollout("checkout", 2)
        # ...search, its state gone, is rebuilt at its stage, told by one alert, the identity
        # kept
        rebuilt = swept["search"]
        assert not isinstance(rebuilt, Exception)
        assert rebuilt.rollout is not None
        assert (rebuilt.rollout.rollout_id, rebuilt.rollout.stage) == ("r-search", 1)
        assert [(a.kind, a.details["identity_lost"]) for a in alerts] == [("store_lost", False)]
        assert list(alerts[0].details["flags"]) == ["search"]  # type: ignore[arg-type]
        # ...and both are served, the store whole again
        assert await keeper.check() is False
        served = await flag_states(states, None, LossGuard(loss, marker))
        assert [(s.flag, s.percent) for s in served.root] == [("checkout", 25.0), ("search", 5.0)]
        assert (loss.lost_flags(), loss.degraded(), len(alerts)) == ([], None, 1)


async def test_a_start_that_finds_the_set_reads_no_topic_for_it(
    redis_url: str, redis_namespace: str
) -> None:
    """A normal start: the set of the flags holds flags; the topics are not read."""
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)

    async def unread(*_: object) -> None:
        raise AssertionError("the topics were read at a normal start")

    async with connect(settings) as client:
        states, marker = (
            RolloutStore(client, settings=settings),
            StoreMarker(client, settings=settings),
        )
        await marker.claim()
        saved = await states.save("checkout", StateWrite(rev=0, rollout=rollout("checkout", 2)))
        assert saved is SaveOutcome.SAVED
        loss = StoreLoss()
        alerts: list[RaiseAlert] = []
        keeper = _starting(states, marker, loss, unread, TopicSettings(), alerts)
        assert await keeper.check() is False
        assert await keeper.check() is False
        assert (await states.flags(), alerts, loss.degraded()) == ({"checkout"}, [], None)
