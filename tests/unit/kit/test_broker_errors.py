"""An unreachable broker is one sentence naming the brokers, the setting and what to check."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    InvalidSessionTimeoutError,
    KafkaConnectionError,
    KafkaTimeoutError,
    UnknownTopicOrPartitionError,
)

from controller.core.common.errors import BrokerUnavailable
from controller.kit.kafka_client import translate

CHECK = (
    "(setting kafka.bootstrap_servers): check that the brokers run and listen at that host and port"
)
REFUSED = KafkaConnectionError(
    "Unable to bootstrap from [('127.0.0.1', 1, <AddressFamily.AF_INET: 2>), ('::1', 9, 10)]"
)


@pytest.mark.parametrize(
    ("exc", "context", "bootstrap", "message"),
    [
        (REFUSED, "", "", f"Kafka at 127.0.0.1:1,::1:9 does not answer {CHECK}"),
        (
            REFUSED,
            "cannot send to c",
            "b:9092",
            f"cannot send to c: Kafka at b:9092 does not answer {CHECK}",
        ),
        (TimeoutError(), "", "b:9092", f"Kafka at b:9092 did not answer in time {CHECK}"),
        (KafkaTimeoutError(), "", "", f"Kafka did not answer in time {CHECK}"),
        (
            ConnectionResetError("reset by peer"),
            "",
            "b:1",
            f"Kafka at b:1 does not answer (reset by peer) {CHECK}",
        ),
    ],
)
def test_an_unreachable_broker_is_one_sentence(
    exc: BaseException, context: str, bootstrap: str, message: str
) -> None:
    error = translate(exc, context, bootstrap=bootstrap)
    assert isinstance(error, BrokerUnavailable)
    assert str(error) == message
    assert "KafkaConnectionError" not in str(error)
    assert "AddressFamily" not in str(error)


def test_other_broker_errors_keep_their_name() -> None:
    error = translate(UnknownTopicOrPartitionError(), "reading")
    assert str(error).startswith("reading: broker error: UnknownTopicOrPartitionError")


def test_a_refused_session_timeout_names_the_setting_and_the_broker_bounds() -> None:
    # Apache Kafka refuses a session timeout outside its group bounds (the embedded
    # broker accepts any): the operator is told which setting to change, not an error code.
    error = translate(InvalidSessionTimeoutError(), "joining group g")
    assert str(error).startswith("joining group g: the group coordinator refuses")
    assert "kafka.session_timeout_ms" in str(error)
    assert "group.min.session.timeout.ms" in str(error)
    assert error.retriable is False
