"""The topic keeper on a real broker: a flag-state topic made again is seen, however made.

The keeper creates the controller's missing topics; and when the flag-state
topic was made again by someone else (a broker that creates the topics clients
ask for), so that nothing is missing when it looks, its log going back still
has every flag state published again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from structlog.testing import capture_logs

from controller.adapters.kafka import (
    LogEndReader,
    Producer,
    Publisher,
    delete_topics,
    ensure_topics,
    log_ends,
    topic_ids,
    topic_names,
)
from controller.core.common import BrokerError, ControllerError
from controller.core.rollouts import RaiseAlert
from controller.daemon.running.topics import TopicKeeper, made_again, remembered, went_back
from controller.settings import KafkaSettings, TopicSettings
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
NAMES = ("events", "commands", "monitors", "flag_state", "segments", "decisions", "alerts", "dlq")


@pytest.mark.parametrize(
    ("before", "now", "lost"),
    [
        ({}, {("fs", 0): 5}, []),  # the first look
        ({("fs", 0): 5}, {("fs", 0): 5}, []),
        ({("fs", 0): 5}, {("fs", 0): 9}, []),  # grown
        ({("fs", 0): 5}, {("fs", 0): 0}, ["fs"]),  # made again, empty
        ({("fs", 0): 5}, {("fs", 0): 3}, ["fs"]),  # made again, refilled a little
        ({("fs", 0): 5, ("fs", 1): 2}, {("fs", 0): 5}, ["fs"]),  # fewer partitions
        ({("fs", 0): 5, ("sg", 0): 4}, {("sg", 0): 0}, ["sg"]),  # fs gone: created, then seen
    ],
)
def test_a_topic_whose_log_ends_earlier_than_it_did_was_made_again(
    before: dict[tuple[str, int], int], now: dict[tuple[str, int], int], lost: list[str]
) -> None:
    assert went_back(before, now) == lost


@pytest.mark.parametrize(
    ("before", "now", "baseline"),
    [
        ({}, {("fs", 0): 5}, {("fs", 0): 5}),
        ({("fs", 0): 5}, {("fs", 0): 0}, {("fs", 0): 0}),  # made again: its new log
        ({("fs", 0): 5, ("sg", 0): 4}, {("sg", 0): 4}, {("fs", 0): 5, ("sg", 0): 4}),  # fs away
        ({("fs", 0): 5, ("fs", 1): 2}, {("fs", 0): 6}, {("fs", 0): 6}),  # fewer partitions
    ],
)
def test_a_topic_absent_at_one_look_keeps_its_last_ends_for_the_next(
    before: dict[tuple[str, int], int],
    now: dict[tuple[str, int], int],
    baseline: dict[tuple[str, int], int],
) -> None:
    assert remembered(before, now) == baseline


def test_a_topic_deleted_within_a_look_and_made_again_before_the_next_went_back() -> None:
    first = {("fs", 0): 5, ("sg", 0): 4}
    during = remembered(first, {("sg", 0): 4})  # fs deleted between the look's questions
    assert went_back(during, {("fs", 0): 0, ("sg", 0): 4}) == ["fs"]


@pytest.mark.parametrize(
    ("before", "now", "again"),
    [
        ({}, {"fs": "a"}, []),  # first seen
        ({"fs": "a"}, {"fs": "a"}, []),
        ({"fs": "a"}, {"fs": "b"}, ["fs"]),  # made again
        ({"fs": "a", "sg": "c"}, {"sg": "d"}, ["sg"]),  # fs not seen now: not named
        ({"fs": "a"}, {}, []),  # a broker without topic ids
    ],
)
def test_a_topic_whose_id_changed_was_made_again(
    before: dict[str, str], now: dict[str, str], again: list[str]
) -> None:
    assert made_again(before, now) == again


def _keeper(
    kafka: KafkaSettings, topics: TopicSettings, *, alarm: Callable[[RaiseAlert], None]
) -> tuple[TopicKeeper, list[list[str]]]:
    """A keeper of ``topics``, and the names it has each time had published again."""
    republished: list[list[str]] = []

    async def recreated(names: list[str]) -> None:
        republished.append(names)

    return TopicKeeper(kafka=kafka, topics=topics, alarm=alarm, recreated=recreated), republished


async def test_an_empty_flag_state_topic_made_again_empty_is_told_by_its_id(
    apache_kafka_bootstrap: str,
) -> None:
    run = uuid.uuid4().hex[:8]
    topics = TopicSettings.model_validate({n: f"keeper.{run}.{n}" for n in NAMES})
    kafka = KafkaSettings(bootstrap_servers=apache_kafka_bootstrap, events_partitions=2)
    keeper, republished = _keeper(kafka, topics, alarm=lambda _: None)
    try:
        # Given the controller's topics, made by the keeper, and looked at once more: the
        # flag-state log is empty (the daemon's first state not yet published)
        assert await keeper.check() != []
        assert await keeper.check() == []
        assert len(republished) == 1
        # When it is deleted and made again by someone else, empty, before the next look
        [old] = (await topic_ids(kafka, [topics.flag_state], timeout_s=10)).values()
        await delete_topics(kafka, [topics.flag_state])

        async def made_again_empty() -> bool:
            admin = AIOKafkaAdminClient(bootstrap_servers=apache_kafka_bootstrap)
            await admin.start()
            try:  # refused while the deletion is not applied everywhere: asked again
                await admin.create_topics([NewTopic(topics.flag_state, 3, 1)])  # as it was
            finally:
                await admin.close()
            new = await topic_ids(kafka, [topics.flag_state], timeout_s=10)
            assert new.get(topics.flag_state) not in (None, old), new
            return True

        await eventually(made_again_empty, timeout=60, what="the flag-state topic made again")
        # Then the keeper, which creates nothing and sees no log go back, knows it by its id
        assert await keeper.check() == []
        assert republished[-1] == [topics.flag_state]
    finally:
        await delete_topics(kafka, list(topics.model_dump().values()))


async def test_a_flag_state_topic_made_again_by_a_client_has_the_states_published_again(
    kafka_bootstrap: str,
) -> None:
    run = uuid.uuid4().hex[:8]
    topics = TopicSettings.model_validate({n: f"keeper.{run}.{n}" for n in NAMES})
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, events_partitions=2)
    alerts: list[RaiseAlert] = []
    keeper, republished = _keeper(kafka, topics, alarm=alerts.append)
    try:
        # Given the controller's topics, made by the keeper, and flag states published
        assert sorted(await keeper.check()) == sorted(set(topics.model_dump().values()))
        assert [a.kind for a in alerts] == ["topics_recreated"]
        assert len(republished) == 1
        async with Producer(kafka=kafka) as producer:
            states = [(topics.flag_state, f"flag-{i}", b"{}") for i in range(6)]
            await Publisher(producer=producer).publish(states)
            assert await keeper.check() == []
            assert len(republished) == 1  # nothing lost: nothing published again
        # When the flag-state topic is deleted and someone else makes it again first, and
        # writes to it (a client of its own: Apache Kafka may answer a producer that knew
        # the deleted topic NOT_LEADER_OR_FOLLOWER until its request times out)
        await delete_topics(kafka, [topics.flag_state])
        await _create(kafka_bootstrap, topics.flag_state)
        async with Producer(kafka=kafka) as someone_else:
            await Publisher(producer=someone_else).publish([(topics.flag_state, "x", b"{}")])
        # Then the keeper creates nothing, yet has every state published again
        assert await keeper.check() == []
        assert republished[-1] == [topics.flag_state]
    finally:
        await delete_topics(kafka, list(topics.model_dump().values()))


async def test_topics_the_broker_will_not_make_are_refused_by_name_and_reason(
    kafka_bootstrap: str,
) -> None:
    # Given a replication factor the one-broker cluster cannot meet
    run = uuid.uuid4().hex[:8]
    topics = TopicSettings.model_validate({n: f"refused.{run}.{n}" for n in NAMES})
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, replication_factor=3)
    # Then creating them fails with the broker's reason, naming each topic
    with pytest.raises(BrokerError) as refused:
        await ensure_topics(kafka, topics)
    message = str(refused.value)
    assert "InvalidReplicationFactorError" in message
    assert all(name in message for name in topics.model_dump().values())
    assert await topic_names(kafka, timeout_s=5) & set(topics.model_dump().values()) == set()
    # And the keeper, asked every few seconds, says so as a warning, not as a broker away
    keeper = TopicKeeper(kafka=kafka, topics=topics, alarm=lambda _: None)
    with capture_logs() as logs:
        assert await keeper.check() == []
    said = [e for e in logs if e["event"] == "topic_check_skipped"]
    assert [e["log_level"] for e in said] == ["warning"]
    assert "InvalidReplicationFactorError" in said[0]["error"]
    # And with a factor it can meet, every one is made
    kafka = kafka.model_copy(update={"replication_factor": 1})
    try:
        made = await ensure_topics(kafka, topics)
        assert sorted(made) == sorted(set(topics.model_dump().values()))
    finally:
        await delete_topics(kafka, list(topics.model_dump().values()))


async def _create(bootstrap: str, name: str) -> None:
    """``name`` made again with the broker's defaults, as a client's request would make it;
    returns once the broker serves the new log, empty (the deleted one held records).

    A deletion the controller has answered may not be applied everywhere yet: a create
    then meets the old topic (``TOPIC_ALREADY_EXISTS``), and a metadata request may still
    list it, or name a partition with no leader yet. So the create is asked again until
    the new log is what is served."""
    ends = LogEndReader(KafkaSettings(bootstrap_servers=bootstrap), timeout_s=5)

    async def served_empty() -> bool:
        try:
            return await ends.log_ends([name]) == {name: {0: 0}}
        except ControllerError:  # a topic between two lives may not answer yet
            return False

    async def made_again() -> bool:
        if not await served_empty():
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
            finally:
                await admin.close()
        return await served_empty()

    await eventually(made_again, timeout=60, what=f"{name} made again, its log empty")


async def test_a_renewed_producer_writes_to_a_topic_made_again(kafka_bootstrap: str) -> None:
    """After a topic was made again the keeper renews the daemon's producer (one that wrote
    to the deleted topic may be answered NOT_LEADER_OR_FOLLOWER until its requests time
    out): what was published before went through the old one, what follows the new one."""
    run = uuid.uuid4().hex[:8]
    topics = TopicSettings.model_validate({n: f"renew.{run}.{n}" for n in NAMES})
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    await ensure_topics(kafka, topics)
    try:
        async with Producer(kafka=kafka, request_timeout_ms=5_000) as producer:
            publisher = Publisher(producer=producer)
            await publisher.publish([(topics.flag_state, "a", b"{}")])
            before = producer.idempotent
            await delete_topics(kafka, [topics.flag_state])
            await _create(kafka_bootstrap, topics.flag_state)
            publisher.renew()
            await publisher.publish([(topics.flag_state, "b", b"{}")])
            assert (before, producer.idempotent) == (True, True)
            ends = await log_ends(kafka, [topics.flag_state])
            assert ends == {(topics.flag_state, 0): 1}  # "b" alone: the new log
    finally:
        await delete_topics(kafka, list(topics.model_dump().values()))
